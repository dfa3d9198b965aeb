"""Per-node listeners, routes and extra clusters rendered from Jinja2 template sets.

The modules, in the order a render flows through them:

* :mod:`.sets` loads the sets (one directory each) and :mod:`.rules` picks a node's set;
* :mod:`.context` is what templates see, :mod:`.reads` which of it a set reads (cache keys);
* :mod:`.rendering` turns a set into checked protobuf resources, with :mod:`.checks`;
* :mod:`.samples` is the data every set is checked against (``check-templates``, ``serve``'s
  start, readiness);
* :mod:`.source` serves them per node (cached, errors kept), :mod:`.watching` reloads on edits,
  :mod:`.settling` holds edits that look half-written until they settle.
"""

from .checks import precheck
from .context import NodeContext, ServiceContext, ServiceContexts, node_context, template_context
from .errors import TemplateError
from .rendering import render_set
from .rules import Rule, parse_rules, select_set
from .samples import (
    sample_catalog,
    sample_nodes,
    sample_nodes_for_set,
    sample_problem,
    sample_renders,
)
from .sets import BUNDLED_DIR, TemplateSet, TemplateSets
from .settling import SETTLE_SECONDS, Settle, unsettled_reason
from .source import RecordedError, TemplateSource, node_error, template_source_from_config
from .watching import Reloaded, TemplateWatcher

__all__ = [
    "BUNDLED_DIR",
    "SETTLE_SECONDS",
    "NodeContext",
    "RecordedError",
    "Reloaded",
    "Rule",
    "ServiceContext",
    "ServiceContexts",
    "Settle",
    "TemplateError",
    "TemplateSet",
    "TemplateSets",
    "TemplateSource",
    "TemplateWatcher",
    "node_context",
    "node_error",
    "parse_rules",
    "precheck",
    "render_set",
    "sample_catalog",
    "sample_nodes",
    "sample_nodes_for_set",
    "sample_problem",
    "sample_renders",
    "select_set",
    "template_context",
    "template_source_from_config",
    "unsettled_reason",
]
