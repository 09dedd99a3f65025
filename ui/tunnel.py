"""``--share``: a public Gradio share link that tunnels to Serve's HTTP port.

The page and the API are both behind that port, so the link serves the whole app. It needs the
internet (Gradio's share server and its tunnel client); without it, one clear error and the app
keeps running locally.
"""

from __future__ import annotations

import secrets

from serving.errors import ChatServiceError


class ShareLinkError(ChatServiceError):
    code = "share_unavailable"


def open_share_link(host: str, port: int) -> str:
    """Start the tunnel and return its public https URL, or raise ``ShareLinkError``."""
    from gradio import networking

    local_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    try:
        address = networking.setup_tunnel(
            local_host=local_host,
            local_port=port,
            share_token=secrets.token_urlsafe(32),
            share_server_address=None,
            share_server_tls_certificate=None,
        )
    except Exception as exc:  # offline, blocked, or the tunnel client cannot be fetched
        cause = exc.__cause__ or exc
        raise ShareLinkError(
            "Could not open a public share link: it needs internet access to Gradio's share "
            f"server ({type(cause).__name__}: {cause}). The app keeps running locally."
        ) from None
    return address.replace("http://", "https://", 1)
