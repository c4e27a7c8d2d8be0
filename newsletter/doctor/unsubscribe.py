"""One-click unsubscribe (RFC 8058): base_url is https and `serve` answers the POST with 200.

The POST carries a probe token (signed with the workspace's secret, purpose PROBE_PURPOSE):
serve answers it like a real one-click request but changes nothing. A 404 therefore also
says that serve does not hold this workspace's secret, so the links in messages would fail.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from newsletter.doctor.model import Status, Verdict, verdict
from newsletter.tokens import PROBE_PURPOSE, load_secret, make_token

ONE_CLICK_BODY = b"List-Unsubscribe=One-Click"


def check_url(base_url: str | None) -> Verdict | None:
    """The no-network half: a failure when base_url cannot carry one-click links, else None."""
    if not base_url:
        return verdict(
            "unsubscribe",
            Status.FAIL,
            "no base_url: messages carry no one-click unsubscribe link",
            'set base_url = "https://..." (where `newsletter serve` answers) in newsletter.toml',
        )
    if urlsplit(base_url).scheme.lower() != "https":
        return verdict(
            "unsubscribe",
            Status.FAIL,
            f"base_url {base_url} is not https: mailbox providers only POST one-click to https",
            "serve it behind TLS (see `Deploying behind a reverse proxy`) and set an https base_url",
        )
    return None


def check(config, lookup, serve_url: str | None, timeout: float) -> Verdict:
    """POST a one-click probe to base_url (or to [doctor] serve_url, with base_url's Host)."""
    import httpx

    from newsletter.doctor.resolver import LookupFailed

    problem = check_url(config.base_url)
    if problem:
        return problem
    public = urlsplit(config.base_url)
    token = make_token(load_secret(config.state_dir), config.list, "doctor-probe", PROBE_PURPOSE)
    path = f"{public.path.rstrip('/')}/unsubscribe/{token}"
    shown = f"POST {config.base_url.rstrip('/')}/unsubscribe/…"
    extensions = {}
    if serve_url:
        target = serve_url.rstrip("/") + path
        shown += f" (sent to {serve_url})"
    else:
        # The doctor's resolver, not the system's: the same view of DNS as every other rule.
        try:
            addresses = lookup.addresses(public.hostname)
        except LookupFailed as exc:
            return verdict("unsubscribe", Status.SKIP, f"{shown}: not checked ({exc})")
        if not addresses:
            return verdict(
                "unsubscribe",
                Status.SKIP,
                f"{shown}: not checked ({public.hostname} has no address)",
                f"publish an A record for {public.hostname} pointing at `newsletter serve`",
            )
        ip = ipaddress.ip_address(addresses[0])
        host = f"[{ip}]" if ip.version == 6 else str(ip)
        target = f"https://{host}:{public.port or 443}{path}"
        extensions = {"sni_hostname": public.hostname}  # the certificate is checked for this name
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False) as client:
            answer = client.post(
                target,
                content=ONE_CLICK_BODY,
                headers={
                    "Host": public.netloc,
                    "Content-Type": "application/x-www-form-urlencoded",
                },
                extensions=extensions,
            )
    except httpx.TransportError as exc:
        return verdict(
            "unsubscribe",
            Status.SKIP,
            f"{shown}: not checked, serve is not reachable from here ({type(exc).__name__})",
            "run `newsletter doctor` where serve can be reached, or set [doctor] serve_url",
        )
    if answer.status_code == 200:
        return verdict("unsubscribe", Status.PASS, f"{shown} answered 200")
    fix = "make `newsletter serve` answer at base_url"
    if answer.status_code == 404:
        fix = (
            "serve did not accept a token made with this workspace's secret: run it with the "
            "same NEWSLETTER_SECRET (or .newsletter/secret) and this version of newsletter"
        )
    elif 300 <= answer.status_code < 400:
        fix = "one-click POSTs are not redirected: set base_url to the address serve answers at"
    return verdict("unsubscribe", Status.FAIL, f"{shown} answered {answer.status_code}", fix)
