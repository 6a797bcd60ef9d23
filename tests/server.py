"""The browser tests start the app through the same helper as `python -m attn loadtest`."""

from attn.server import REPO, free_port, running_server, streamlit_server  # noqa: F401
