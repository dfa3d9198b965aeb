"""Per-node listeners, routes and extra clusters rendered from Jinja2 template sets.

The modules, in the order a render flows through them:

* :mod:`.sets` loads the sets (one directory each) and :mod:`.rules` picks a node's set;
* :mod:`.context` is what templates see, :mod:`.reads` which of it a set reads (cache keys);
* :mod:`.rendering` turns a set into checked protobuf resources, with :mod:`.checks`;
* :mod:`.source` serves them per node (cached, errors kept), :mod:`.watching` reloads on edits.
"""

from .checks import precheck
from .context import NodeContext, ServiceContext, ServiceContexts, node_context, template_context
from .errors import TemplateError
from .rendering import render_set
from .rules import Rule, parse_rules, select_set
from .sets import BUNDLED_DIR, TemplateSet, TemplateSets
from .source import RecordedError, TemplateSource, node_error, template_source_from_config
from .watching import TemplateWatcher

__all__ = [
    "BUNDLED_DIR",
    "NodeContext",
    "RecordedError",
    "Rule",
    "ServiceContext",
    "ServiceContexts",
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
    "select_set",
    "template_context",
    "template_source_from_config",
]
