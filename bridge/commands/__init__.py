"""The command line's commands that are more than a call into the bridge (``check-templates``)."""
