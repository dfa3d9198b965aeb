"""Each protoc-gen-validate rule the validation gate evaluates, on a message type made for it:
a value that breaks the rule is named with its field path and what is wrong; a value that keeps
it (including the edges of a range) passes."""

from __future__ import annotations

import math

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from google.protobuf import any_pb2, duration_pb2, wrappers_pb2
from google.protobuf.message import Message
from validate import validate_pb2 as v

from tests.support.pgv_messages import F, message_type
from xds_server.validation import MAX_DEPTH, InvalidResource, check, check_route_domains, validate


def one(kind: str, rules: v.FieldRules, repeated: bool = False) -> type[Message]:
    return message_type(F("f", kind, rules, repeated))


def build(cls: type[Message], **values: object) -> Message:
    """``cls(**values)``; message values (of the default pool's types) are copied by bytes."""
    scalars = {k: v for k, v in values.items() if not isinstance(v, Message)}
    built = cls(**scalars)
    for name, value in values.items():
        if isinstance(value, Message):
            field = getattr(built, name)
            field.SetInParent()
            field.MergeFromString(value.SerializeToString())
    return built


def problems_of(cls: type[Message], **values: object) -> list[str]:
    return check(build(cls, **values))


# ------------------------------------------------------------------------------ strings
STRING_CASES = [
    (v.StringRules(min_len=2), "ab", "a", "must be at least 2 character(s), got 'a'"),
    (v.StringRules(max_len=2), "ab", "abc", "must be at most 2 characters, got 'abc'"),
    (v.StringRules(len=2), "ab", "abc", "must be 2 characters long, got 'abc'"),
    (v.StringRules(len=2), "ab", "a", "must be 2 characters long, got 'a'"),
    (v.StringRules(min_bytes=3), "é.", "éa"[:1] + "", "must be at least 3 bytes, got 'é'"),
    (v.StringRules(max_bytes=2), "é", "é.", "must be at most 2 bytes, got 'é.'"),
    (v.StringRules(const="x"), "x", "y", "must equal 'x', got 'y'"),
    (v.StringRules(prefix="ab"), "abc", "cab", "must start with 'ab', got 'cab'"),
    (v.StringRules(suffix="bc"), "abc", "bca", "must end with 'bc', got 'bca'"),
    (v.StringRules(contains="b"), "abc", "ac", "must contain 'b', got 'ac'"),
    (v.StringRules(not_contains="b"), "ac", "abc", "must not contain 'b', got 'abc'"),
    (v.StringRules(**{"in": ["a", "b"]}), "b", "c", "must be one of ['a', 'b'], got 'c'"),
    (v.StringRules(not_in=["a"]), "b", "a", "is not allowed, got 'a'"),
    (v.StringRules(pattern="^[a-z]+$"), "abc", "ab1", "must match '^[a-z]+$', got 'ab1'"),
    (v.StringRules(hostname=True), "web-1.example.com.", "-web", "must be a valid hostname"),
    (v.StringRules(ip=True), "::1", "1.2.3", "must be a valid ip, got '1.2.3'"),
    (v.StringRules(ipv4=True), "10.0.0.1", "::1", "must be a valid ipv4, got '::1'"),
    (v.StringRules(ipv6=True), "::1", "10.0.0.1", "must be a valid ipv6, got '10.0.0.1'"),
    (v.StringRules(address=True), "10.0.0.1", "bad_host", "must be a valid address"),
    (v.StringRules(address=True), "web.local", "", "must be a valid address, got ''"),
]


@pytest.mark.parametrize(("rules", "good", "bad", "problem"), STRING_CASES)
def test_string_rules(rules: v.StringRules, good: str, bad: str, problem: str) -> None:
    cls = one("string", v.FieldRules(string=rules))
    assert problems_of(cls, f=good) == []
    assert problems_of(cls, f=bad)[0].startswith(f"f: {problem}")
    assert len(problems_of(cls, f=bad)) == 1


def test_hostnames_are_checked_label_by_label_and_by_length() -> None:
    cls = one("string", v.FieldRules(string=v.StringRules(hostname=True)))
    for good in ("a", "a.b", "a" * 63, ".".join(["a" * 63] * 3) + "." + "a" * 61):
        assert problems_of(cls, f=good) == [], good
    for bad in ("a" * 64, ".".join(["a" * 63] * 4), "a..b", "a_b", "a-", "."):
        assert problems_of(cls, f=bad) != [], bad


def test_an_ip_is_a_valid_address_but_not_a_valid_hostname() -> None:
    address = one("string", v.FieldRules(string=v.StringRules(address=True)))
    hostname = one("string", v.FieldRules(string=v.StringRules(hostname=True)))
    assert problems_of(address, f="::1") == []
    assert problems_of(hostname, f="::1") != []


def test_a_well_known_rule_set_to_false_checks_nothing() -> None:
    cls = one("string", v.FieldRules(string=v.StringRules(hostname=False, min_len=0)))
    assert problems_of(cls, f="not a hostname!") == []


def test_rules_not_used_by_envoy_resources_are_not_guessed_at() -> None:
    for rules in (v.StringRules(email=True), v.StringRules(uri=True), v.StringRules(uuid=True)):
        cls = one("string", v.FieldRules(string=rules))
        assert problems_of(cls, f="anything at all") == []
    untranslatable = one("string", v.FieldRules(string=v.StringRules(pattern="(?i:a")))
    assert problems_of(untranslatable, f="b") == []


@pytest.mark.parametrize(
    ("regex", "strict", "good", "bad"),
    [
        (v.HTTP_HEADER_NAME, None, ":authority", "bad header"),
        (v.HTTP_HEADER_NAME, True, "x-web", "x web"),
        (v.HTTP_HEADER_NAME, False, "x web", "x\nweb"),
        (v.HTTP_HEADER_VALUE, None, "a\tb c", "a\x01b"),
        (v.HTTP_HEADER_VALUE, False, "a\x01b", "a\rb"),
    ],
)
def test_header_name_and_value_rules_strict_by_default(
    regex: int, strict: bool | None, good: str, bad: str
) -> None:
    rules = v.StringRules(well_known_regex=regex)
    if strict is not None:
        rules.strict = strict
    cls = one("string", v.FieldRules(string=rules))
    assert problems_of(cls, f=good) == []
    assert problems_of(cls, f=bad) == [f"f: must be a valid well_known_regex, got {bad!r}"]


def test_an_unknown_well_known_regex_accepts_anything() -> None:
    cls = one("string", v.FieldRules(string=v.StringRules(well_known_regex=v.UNKNOWN)))
    assert problems_of(cls, f="\x00 anything") == []


def test_an_empty_string_may_be_allowed_and_long_values_are_shortened_in_problems() -> None:
    cls = one("string", v.FieldRules(string=v.StringRules(min_len=3, ignore_empty=True)))
    assert problems_of(cls) == []
    assert problems_of(cls, f="ab") == ["f: must be at least 3 character(s), got 'ab'"]
    long = one("string", v.FieldRules(string=v.StringRules(max_len=1)))
    shown = "x" * 77 + "..."
    assert problems_of(long, f="x" * 81) == [f"f: must be at most 1 characters, got {shown!r}"]
    assert problems_of(long, f="x" * 80) == [f"f: must be at most 1 characters, got {'x' * 80!r}"]


def test_a_string_with_only_modifiers_checks_nothing() -> None:
    cls = one("string", v.FieldRules(string=v.StringRules(strict=True)))
    assert problems_of(cls, f="anything") == []


# ------------------------------------------------------------------------------ numbers
@pytest.mark.parametrize(
    ("rules", "good", "bad", "problem"),
    [
        (v.UInt32Rules(gt=5), [6], [5], "must be greater than 5, got 5"),
        (v.UInt32Rules(gte=5), [5], [4], "must be at least 5, got 4"),
        (v.UInt32Rules(lt=5), [4], [5], "must be less than 5, got 5"),
        (v.UInt32Rules(lte=5), [5], [6], "must be at most 5, got 6"),
        (v.UInt32Rules(gte=2, lte=4), [2, 3, 4], [1, 5], "must be"),
        (v.UInt32Rules(gt=2, lt=4), [3], [2, 4], "must be"),
        (v.UInt32Rules(gt=10, lt=5), [4, 11], [5, 7, 10], "must be outside 5 .. 10, got"),
        (v.UInt32Rules(gte=10, lte=5), [5, 10], [6, 9], "must be outside 5 .. 10, got"),
        (v.UInt32Rules(const=3), [3], [4], "must equal 3, got 4"),
        (v.UInt32Rules(**{"in": [1, 3]}), [1, 3], [2], "must be one of [1, 3], got 2"),
        (v.UInt32Rules(not_in=[2]), [1, 3], [2], "must not be 2"),
    ],
)
def test_number_rules(rules: v.UInt32Rules, good: list[int], bad: list[int], problem: str) -> None:
    cls = one("uint32", v.FieldRules(uint32=rules))
    for value in good:
        assert problems_of(cls, f=value) == [], value
    for value in bad:
        [found] = problems_of(cls, f=value)
        assert found.startswith(f"f: {problem}"), (value, found)
        assert found.endswith(f" {value}"), (value, found)


def test_a_zero_may_be_allowed_and_the_rules_apply_to_every_numeric_type() -> None:
    optional = one("uint32", v.FieldRules(uint32=v.UInt32Rules(gte=5, ignore_empty=True)))
    assert problems_of(optional) == []
    assert problems_of(optional, f=1) == ["f: must be at least 5, got 1"]
    signed = one("int64", v.FieldRules(int64=v.Int64Rules(gte=-2)))
    assert problems_of(signed, f=-3) == ["f: must be at least -2, got -3"]
    real = one("double", v.FieldRules(double=v.DoubleRules(lt=1.5)))
    assert problems_of(real, f=1.5) == ["f: must be less than 1.5, got 1.5"]


def test_a_number_that_is_not_finite_is_refused_first() -> None:
    cls = one("double", v.FieldRules(double=v.DoubleRules(gte=0)))
    assert problems_of(cls, f=math.inf) == ["f: must be a finite number, got inf"]
    assert problems_of(cls, f=math.nan) == ["f: must be a finite number, got nan"]


def test_a_wrapped_number_is_checked_by_its_value() -> None:
    cls = one("UInt32Value", v.FieldRules(uint32=v.UInt32Rules(gte=1)))
    assert problems_of(cls) == []  # unset: the wrapper is absent
    assert problems_of(cls, f=wrappers_pb2.UInt32Value(value=0)) == ["f: must be at least 1, got 0"]
    assert problems_of(cls, f=wrappers_pb2.UInt32Value(value=1)) == []


# ------------------------------------------------------------------------- other scalars
def test_bytes_rules() -> None:
    cls = one("bytes", v.FieldRules(bytes=v.BytesRules(min_len=2, max_len=3)))
    assert problems_of(cls, f=b"ab") == []
    assert problems_of(cls, f=b"abc") == []
    assert problems_of(cls, f=b"a") == ["f: must be at least 2 bytes"]
    assert problems_of(cls, f=b"abcd") == ["f: must be at most 3 bytes"]
    optional = one("bytes", v.FieldRules(bytes=v.BytesRules(min_len=2, ignore_empty=True)))
    assert problems_of(optional) == []


def test_enum_rules() -> None:
    defined = one("enum", v.FieldRules(enum=v.EnumRules(defined_only=True)))
    assert problems_of(defined, f=2) == []
    assert problems_of(defined, f=3) == ["f: 3 is not a defined Color value"]
    const = one("enum", v.FieldRules(enum=v.EnumRules(const=1)))
    assert problems_of(const, f=1) == []
    assert problems_of(const, f=2) == ["f: must equal 1, got 2"]
    allowed = one("enum", v.FieldRules(enum=v.EnumRules(**{"in": [0, 1]})))
    assert problems_of(allowed, f=1) == []
    assert problems_of(allowed, f=2) == ["f: must be one of [0, 1], got 2"]
    denied = one("enum", v.FieldRules(enum=v.EnumRules(not_in=[2])))
    assert problems_of(denied, f=1) == []
    assert problems_of(denied, f=2) == ["f: must not be 2"]


def test_bool_const() -> None:
    cls = one("bool", v.FieldRules(bool=v.BoolRules(const=True)))
    assert problems_of(cls, f=True) == []
    assert problems_of(cls) == ["f: must be True"]  # unset is false


# ----------------------------------------------------------------------------- durations
def duration(seconds: int = 0, nanos: int = 0) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=seconds, nanos=nanos)


@pytest.mark.parametrize(
    ("rules", "good", "bad", "problem"),
    [
        (v.DurationRules(gt=duration()), duration(nanos=1), duration(), "greater than 0s"),
        (v.DurationRules(gte=duration(1)), duration(1), duration(0, 999_999_999), "at least 1s"),
        (v.DurationRules(lt=duration(2)), duration(1, 5), duration(2), "less than 2s, got 2s"),
        (v.DurationRules(lte=duration(2)), duration(2), duration(2, 1), "at most 2s"),
        (v.DurationRules(const=duration(1, 500_000_000)), duration(1, 500_000_000), duration(1),
         "must equal 1.5s"),
    ],
)  # fmt: skip
def test_duration_rules(
    rules: v.DurationRules,
    good: duration_pb2.Duration,
    bad: duration_pb2.Duration,
    problem: str,
) -> None:
    cls = one("Duration", v.FieldRules(duration=rules))
    assert problems_of(cls, f=good) == []
    [found] = problems_of(cls, f=bad)
    assert found.startswith("f: "), found
    assert problem in found, found


def test_malformed_durations_are_refused_whatever_the_rules() -> None:
    cls = one("Duration", v.FieldRules(duration=v.DurationRules(gte=duration(-(10**12)))))
    sign = "f: seconds and nanos must have the same sign"
    assert problems_of(cls, f=duration(1, -1)) == [sign]
    assert problems_of(cls, f=duration(-1, 1)) == [sign]
    assert problems_of(cls, f=duration(-1, -1)) == []
    out = "f: duration out of range"
    assert problems_of(cls, f=duration(0, 1_000_000_000)) == [out]
    assert problems_of(cls, f=duration(0, -1_000_000_000)) == [out]
    assert problems_of(cls, f=duration(315_576_000_001)) == [out]
    assert problems_of(cls, f=duration(-315_576_000_001)) == [out]
    assert problems_of(cls, f=duration(315_576_000_000)) == []


@pytest.mark.parametrize(
    "kind",
    [
        "duration",
        "timestamp",
        "any",
        "message",
    ],
)
def test_a_required_message_must_be_set(kind: str) -> None:
    field_kind = {"duration": "Duration", "timestamp": "Timestamp", "any": "Any"}.get(kind, "self")
    rules = v.FieldRules()
    getattr(rules, kind).required = True
    cls = one(field_kind, rules)
    assert problems_of(cls) == ["f: value is required"]
    not_required = one(field_kind, v.FieldRules(**{kind: {}}))
    assert problems_of(not_required) == []


def test_any_rules_allow_and_deny_type_urls() -> None:
    allowed = "type.googleapis.com/google.protobuf.Duration"
    cls = one("Any", v.FieldRules(any=v.AnyRules(**{"in": [allowed]})))
    assert problems_of(cls, f=any_pb2.Any(type_url=allowed)) == []
    other = any_pb2.Any(type_url="type.googleapis.com/google.protobuf.Timestamp")
    assert problems_of(cls, f=other) == [f"f: type {other.type_url!r} is not allowed here"]
    denied = one("Any", v.FieldRules(any=v.AnyRules(not_in=[allowed])))
    assert problems_of(denied, f=any_pb2.Any(type_url=allowed)) == [
        f"f: type {allowed!r} is not allowed here"
    ]
    assert problems_of(denied, f=other) == []


# ------------------------------------------------------------------ repeated and maps
def test_repeated_rules_count_items_and_check_each() -> None:
    rules = v.FieldRules(
        repeated=v.RepeatedRules(
            min_items=1,
            max_items=2,
            unique=True,
            items=v.FieldRules(string=v.StringRules(min_len=2)),
        )
    )
    cls = one("string", rules, repeated=True)
    assert problems_of(cls, f=["ab", "cd"]) == []
    assert problems_of(cls) == ["f: at least 1 item(s) required, got 0"]
    assert problems_of(cls, f=["ab", "cd", "ef"]) == ["f: at most 2 item(s) allowed, got 3"]
    assert problems_of(cls, f=["ab", "ab"]) == ["f: items must be unique ('ab' repeats)"]
    assert problems_of(cls, f=["ab", "c"]) == ["f[1]: must be at least 2 character(s), got 'c'"]
    optional = one(
        "string", v.FieldRules(repeated=v.RepeatedRules(min_items=2, ignore_empty=True)), True
    )
    assert problems_of(optional) == []
    assert problems_of(optional, f=["a"]) == ["f: at least 2 item(s) required, got 1"]


def test_a_repeat_is_reported_once() -> None:
    cls = one("string", v.FieldRules(repeated=v.RepeatedRules(unique=True)), repeated=True)
    assert problems_of(cls, f=["a", "a", "b", "b"]) == ["f: items must be unique ('a' repeats)"]


def test_messages_inside_repeated_fields_are_checked_with_their_index() -> None:
    item = message_type(F("name", "string", v.FieldRules(string=v.StringRules(min_len=1))))
    ruled = message_type(
        F("items", item.DESCRIPTOR.full_name, v.FieldRules(repeated=v.RepeatedRules(max_items=5)),
          repeated=True)
    )  # fmt: skip
    plain = message_type(F("items", item.DESCRIPTOR.full_name, repeated=True))
    for cls in (ruled, plain):
        value = cls()
        value.items.add(name="a")  # type: ignore[attr-defined]
        value.items.add(name="")  # type: ignore[attr-defined]
        assert check(value) == ["items[1].name: must be at least 1 character(s), got ''"]


def test_map_rules_count_pairs_and_check_keys_and_values() -> None:
    rules = v.FieldRules(
        map=v.MapRules(
            min_pairs=1,
            max_pairs=2,
            keys=v.FieldRules(string=v.StringRules(min_len=2)),
            values=v.FieldRules(string=v.StringRules(max_len=1)),
        )
    )
    cls = one("map<string,string>", rules)
    assert problems_of(cls, f={"ab": "x"}) == []
    assert problems_of(cls) == ["f: at least 1 entries required, got 0"]
    assert problems_of(cls, f={"ab": "", "cd": "", "ef": ""}) == [
        "f: at most 2 entries allowed, got 3"
    ]
    assert problems_of(cls, f={"a": "x"}) == [
        "f[a] (key): must be at least 2 character(s), got 'a'"
    ]
    assert problems_of(cls, f={"ab": "xy"}) == ["f[ab]: must be at most 1 characters, got 'xy'"]
    optional = one(
        "map<string,string>", v.FieldRules(map=v.MapRules(min_pairs=2, ignore_empty=True))
    )
    assert problems_of(optional) == []
    assert problems_of(optional, f={"a": "b"}) == ["f: at least 2 entries required, got 1"]


def test_messages_inside_maps_are_checked_with_their_key() -> None:
    item = message_type(F("name", "string", v.FieldRules(string=v.StringRules(min_len=1))))
    kind = f"map<string,{item.DESCRIPTOR.full_name}>"
    for cls in (one(kind, v.FieldRules(map=v.MapRules(max_pairs=5))), message_type(F("f", kind))):
        value = cls()
        value.f["ok"].name = "a"  # type: ignore[attr-defined]
        value.f["bad"].SetInParent()  # type: ignore[attr-defined]
        assert check(value) == ["f[bad].name: must be at least 1 character(s), got ''"]
    scalars = message_type(F("f", "map<string,string>"))
    assert check(scalars(f={"": ""})) == []


# ------------------------------------------------------------------- messages and oneofs
def test_a_field_left_unset_breaks_a_rule_only_when_its_default_does() -> None:
    cls = message_type(
        F("name", "string", v.FieldRules(string=v.StringRules(min_len=1))),
        F("count", "uint32", v.FieldRules(uint32=v.UInt32Rules(lte=5))),
        F("choice_a", "string", v.FieldRules(string=v.StringRules(min_len=1)), oneof="choice"),
    )
    assert check(cls()) == ["name: must be at least 1 character(s), got ''"]
    assert check(cls(name="a")) == []  # a oneof member is checked only when set
    assert check(cls(name="a", choice_a="")) == [
        "choice_a: must be at least 1 character(s), got ''"
    ]


def test_a_required_oneof_needs_one_of_its_fields() -> None:
    cls = message_type(
        F("a", "string", oneof="choice"),
        F("b", "uint32", oneof="choice"),
        F("c", "string", oneof="free"),
        required_oneofs=("choice",),
    )
    assert check(cls()) == ["choice: one of its fields is required"]
    assert check(cls(b=0)) == []


def test_disabled_or_ignored_messages_are_not_checked() -> None:
    rule = v.FieldRules(string=v.StringRules(min_len=1))
    assert check(message_type(F("f", "string", rule), disabled=True)()) == []
    assert check(message_type(F("f", "string", rule), ignored=True)()) == []
    assert check(message_type(F("f", "string", rule))()) != []


def test_a_route_without_a_match_is_refused() -> None:
    route = route_components_pb2.Route()
    route.route.cluster = "web"
    assert check(route) == ["match: value is required"]


def test_skipped_messages_are_not_checked_inside() -> None:
    inner = message_type(F("name", "string", v.FieldRules(string=v.StringRules(min_len=1))))
    skip = v.FieldRules(message=v.MessageRules(skip=True, required=True))
    cls = message_type(F("inner", inner.DESCRIPTOR.full_name, skip))
    assert check(cls()) == []
    value = cls()
    value.inner.SetInParent()  # type: ignore[attr-defined]
    assert check(value) == []


def test_nested_messages_are_checked_with_their_path_down_to_a_depth_limit() -> None:
    cls = message_type(
        F("name", "string", v.FieldRules(string=v.StringRules(max_len=1))),
        F("child", "self"),
    )
    value = cls()
    deep = value
    for _ in range(3):
        deep = deep.child  # type: ignore[attr-defined]
    deep.name = "xy"  # type: ignore[attr-defined]
    assert check(value) == ["child.child.child.name: must be at most 1 characters, got 'xy'"]

    too_deep = cls()
    node = too_deep
    for _ in range(MAX_DEPTH + 2):
        node = node.child  # type: ignore[attr-defined]
    node.name = "x"  # type: ignore[attr-defined]
    [problem] = check(too_deep)
    assert problem == ".".join(["child"] * (MAX_DEPTH + 1)) + (
        f": nested deeper than {MAX_DEPTH} levels"
    )
    at_limit = cls()
    node = at_limit
    for _ in range(MAX_DEPTH):
        node = node.child  # type: ignore[attr-defined]
    node.name = "x"  # type: ignore[attr-defined]
    assert check(at_limit) == []


def test_packed_messages_of_unknown_or_broken_types_are_skipped() -> None:
    def listener(packed: any_pb2.Any) -> listener_pb2.Listener:
        value = listener_pb2.Listener(name="l")
        value.address.socket_address.address = "0.0.0.0"
        value.address.socket_address.port_value = 10000
        value.filter_chains.add().filters.add(name="f").typed_config.CopyFrom(packed)
        return value

    typed_config = "filter_chains[0].filters[0].typed_config"
    unknown = any_pb2.Any(type_url="type.googleapis.com/nobody.Knows", value=b"\x01")
    assert check(listener(unknown)) == []
    broken = any_pb2.Any(
        type_url="type.googleapis.com/envoy.config.cluster.v3.Cluster", value=b"\xff\xff"
    )
    assert check(listener(broken)) == []
    bad = any_pb2.Any()
    bad.Pack(cluster_pb2.Cluster(name=""))
    assert f"{typed_config}.name: must be at least 1 character(s), got ''" in check(listener(bad))


def test_problems_stop_at_twenty() -> None:
    cls = one("string", v.FieldRules(repeated=v.RepeatedRules(items=v.FieldRules(
        string=v.StringRules(min_len=2)))), repeated=True)  # fmt: skip
    problems = check(cls(f=["x"] * 50))
    assert len(problems) == 20
    assert problems[19] == "f[19]: must be at least 2 character(s), got 'x'"


# ---------------------------------------------------------------------- route domains
def dropped(config: route_pb2.RouteConfiguration) -> dict[str, str]:
    """The virtual hosts left out, by name, with why."""
    return {host.name: host.problem for host in check_route_domains(config)}


def test_a_domain_listed_twice_in_one_virtual_host_collides() -> None:
    config = route_pb2.RouteConfiguration(name="r")
    config.virtual_hosts.add(name="web", domains=["web", "WEB"])
    config.virtual_hosts.add(name="api", domains=["api"])
    assert dropped(config) == {"web": "domain 'web' is listed twice"}


def test_a_colliding_virtual_host_claims_none_of_its_domains() -> None:
    config = route_pb2.RouteConfiguration(name="r")
    config.virtual_hosts.add(name="web", domains=["web"])
    config.virtual_hosts.add(name="web2", domains=["web", "www"])
    config.virtual_hosts.add(name="www", domains=["www"])
    config.virtual_hosts.add(name="web3", domains=["WEB", "web"])
    assert dropped(config) == {
        "web2": "domain 'web' is also claimed by virtual host 'web'",
        "web3": "domain 'web' is also claimed by virtual host 'web'",
    }


# ------------------------------------------------------------------ edges found by mutation
def test_the_error_lists_every_problem_separated_by_semicolons() -> None:
    cls = message_type(
        F("a", "string", v.FieldRules(string=v.StringRules(min_len=1))),
        F("b", "string", v.FieldRules(string=v.StringRules(min_len=1))),
    )
    with pytest.raises(InvalidResource) as caught:
        validate(cls())
    assert caught.value.problems == [
        "a: must be at least 1 character(s), got ''",
        "b: must be at least 1 character(s), got ''",
    ]
    assert str(caught.value) == "; ".join(caught.value.problems)


def chain(kind: str, levels: int) -> Message:
    """A message nested ``levels`` deep through ``kind`` (singular, repeated, map or any), whose
    innermost level breaks a rule."""
    rule = v.FieldRules(string=v.StringRules(max_len=0))
    if kind == "any":  # Anys packed in Anys, the innermost holding a cluster without a name
        inner = any_pb2.Any()
        inner.Pack(cluster_pb2.Cluster(name=""))
        for _ in range(levels - 1):
            outer = any_pb2.Any()
            outer.Pack(inner)
            inner = outer
        return inner
    field = {
        "singular": F("child", "self"),
        "repeated": F("child", "self", repeated=True),
        "repeated with rules": F(
            "child", "self", v.FieldRules(repeated=v.RepeatedRules(max_items=9)), repeated=True
        ),
        "map": F("child", "map<string,self>"),
        "map with rules": F("child", "map<string,self>", v.FieldRules(map=v.MapRules(max_pairs=9))),
    }[kind]
    cls = message_type(F("name", "string", rule), field)
    top = cls()
    node = top
    for _ in range(levels):
        child = node.child  # type: ignore[attr-defined]
        if kind.startswith("repeated"):
            node = child.add()
        elif kind.startswith("map"):
            node = child["k"]
        else:
            node = child
    node.name = "x"  # type: ignore[attr-defined]
    return top


@pytest.mark.parametrize(
    "kind", ["singular", "repeated", "repeated with rules", "map", "map with rules", "any"]
)
def test_every_kind_of_nesting_counts_one_level_toward_the_limit(kind: str) -> None:
    at_limit = check(chain(kind, MAX_DEPTH))
    assert at_limit != []  # the innermost rule is still checked ...
    assert not any("nested deeper" in p for p in at_limit)
    too_deep = check(chain(kind, MAX_DEPTH + 1))
    assert len(too_deep) == 1
    assert too_deep[0].endswith(f"nested deeper than {MAX_DEPTH} levels")  # ... not beyond


def test_a_repeated_field_with_rules_of_no_kind_still_checks_its_messages() -> None:
    item = message_type(F("name", "string", v.FieldRules(string=v.StringRules(min_len=1))))
    cls = message_type(
        F("items", item.DESCRIPTOR.full_name, v.FieldRules(message=v.MessageRules()), repeated=True)
    )
    value = cls()
    value.items.add(name="")  # type: ignore[attr-defined]
    assert check(value) == ["items[0].name: must be at least 1 character(s), got ''"]


def test_counts_at_their_limits_are_accepted() -> None:
    repeated = one("string", v.FieldRules(repeated=v.RepeatedRules(min_items=2)), repeated=True)
    assert problems_of(repeated, f=["a", "b"]) == []
    pairs = one("map<string,string>", v.FieldRules(map=v.MapRules(max_pairs=2)))
    assert problems_of(pairs, f={"a": "", "b": ""}) == []


def test_a_repeat_does_not_stop_the_items_being_checked() -> None:
    rules = v.FieldRules(
        repeated=v.RepeatedRules(unique=True, items=v.FieldRules(string=v.StringRules(min_len=2)))
    )
    cls = one("string", rules, repeated=True)
    assert problems_of(cls, f=["ab", "ab", "c"]) == [
        "f: items must be unique ('ab' repeats)",
        "f[2]: must be at least 2 character(s), got 'c'",
    ]


def test_enum_items_and_map_values_are_checked_against_their_enum() -> None:
    defined = v.FieldRules(enum=v.EnumRules(defined_only=True))
    items = one("enum", v.FieldRules(repeated=v.RepeatedRules(items=defined)), repeated=True)
    assert problems_of(items, f=[1, 7]) == ["f[1]: 7 is not a defined Color value"]
    values = one("map<string,enum>", v.FieldRules(map=v.MapRules(values=defined)))
    assert problems_of(values, f={"a": 2, "b": 9}) == ["f[b]: 9 is not a defined Color value"]


def test_an_unset_bytes_field_breaks_a_minimum_length() -> None:
    cls = one("bytes", v.FieldRules(bytes=v.BytesRules(min_len=2)))
    assert problems_of(cls) == ["f: must be at least 2 bytes"]


def test_a_rule_the_gate_does_not_know_does_not_stop_the_others() -> None:
    cls = one("string", v.FieldRules(string=v.StringRules(len_bytes=3, not_contains="b")))
    assert problems_of(cls, f="xbx") == ["f: must not contain 'b', got 'xbx'"]


def test_an_ipv4_address_is_an_ip() -> None:
    cls = one("string", v.FieldRules(string=v.StringRules(ip=True)))
    assert problems_of(cls, f="10.0.0.1") == []


def test_a_hostname_may_end_with_one_dot_and_is_at_most_253_characters() -> None:
    cls = one("string", v.FieldRules(string=v.StringRules(hostname=True)))
    assert problems_of(cls, f="a.") == []
    assert problems_of(cls, f="ab-.") != []  # the last label still must not end with "-"
    assert problems_of(cls, f="a..") != []
    longest = ".".join(["a" * 63] * 3) + "." + "a" * 61
    assert len(longest) == 253
    assert problems_of(cls, f=longest) == []
    assert problems_of(cls, f=longest + ".") == []
    assert problems_of(cls, f=longest + "a") != []


def test_a_packed_message_is_found_by_the_last_part_of_its_type_url() -> None:
    packed = any_pb2.Any()
    packed.Pack(cluster_pb2.Cluster(name=""), type_url_prefix="example.com/types/")
    assert packed.type_url == "example.com/types/envoy.config.cluster.v3.Cluster"
    listener = listener_pb2.Listener(name="l")
    listener.address.socket_address.address = "0.0.0.0"
    listener.address.socket_address.port_value = 10000
    listener.filter_chains.add().filters.add(name="f").typed_config.CopyFrom(packed)
    assert (
        "filter_chains[0].filters[0].typed_config.name: must be at least 1 character(s), got ''"
        in (check(listener))
    )
