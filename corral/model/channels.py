"""Known exfiltration and fronting channels: paste sites, tunnels, shared CDN fronts, DoH.

Used by the policy linter (a warning when an allow entry opens one of them) and by the review loop
(a risk flag on a newly seen destination). Data, not logic: extend the table, not the code.
"""

from __future__ import annotations

from dataclasses import dataclass

from corral.model.domains import DomainPattern


@dataclass(frozen=True, slots=True)
class Channel:
    domain: str
    category: str
    reason: str


_PASTE = "paste site: anything posted there is public and leaves no trace in your logs"
_TUNNEL = "tunnel service: reaches arbitrary hosts, including the attacker's, behind one name"
_FRONT = "shared CDN/hosting front: any customer's content sits behind the same names"
_DOH = "DNS-over-HTTPS resolver: hides name lookups from cluster DNS and can carry data"
_SHARE = "file sharing: built to move files out anonymously"
_CATCH = "request catcher / out-of-band service: used to confirm and receive exfiltration"
_CHAT = "chat webhook/bot API: a common command-and-control and exfiltration channel"

_GROUPS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("paste", _PASTE, (
        "pastebin.com", "paste.ee", "hastebin.com", "rentry.co", "rentry.org", "dpaste.org",
        "dpaste.com", "termbin.com", "ghostbin.com", "controlc.com", "privatebin.net",
        "paste.mozilla.org", "justpaste.it", "pastes.io", "gist.githubusercontent.com",
        "gist.github.com"
    )),
    ("tunnel", _TUNNEL, (
        "ngrok.io", "ngrok.app", "ngrok-free.app", "ngrok.dev", "trycloudflare.com", "loca.lt",
        "localtunnel.me", "serveo.net", "localhost.run", "lhr.life", "pagekite.me",
        "tunnelmole.net", "bore.pub", "telebit.cloud", "playit.gg"
    )),
    ("cdn-front", _FRONT, (
        "cloudfront.net", "azureedge.net", "azurefd.net", "fastly.net", "akamaiedge.net",
        "akamaized.net", "edgekey.net", "appspot.com", "herokuapp.com", "workers.dev",
        "pages.dev", "vercel.app", "netlify.app", "blob.core.windows.net", "s3.amazonaws.com",
        "storage.googleapis.com", "web.app", "firebaseapp.com", "r2.dev", "b-cdn.net"
    )),
    ("doh", _DOH, (
        "dns.google", "dns.google.com", "cloudflare-dns.com", "one.one.one.one",
        "dns.quad9.net", "doh.opendns.com", "dns.nextdns.io", "doh.pub", "dns.adguard.com",
        "doh.cleanbrowsing.org", "dns.alidns.com"
    )),
    ("file-sharing", _SHARE, (
        "transfer.sh", "file.io", "0x0.st", "wetransfer.com", "we.tl", "mega.nz", "mega.io",
        "anonfiles.com", "gofile.io", "catbox.moe", "litterbox.catbox.moe", "sendspace.com",
        "temp.sh", "bashupload.com"
    )),
    ("request-catcher", _CATCH, (
        "webhook.site", "requestbin.com", "pipedream.net", "interact.sh", "oast.fun",
        "oast.pro", "oast.live", "oast.site", "oast.online", "oast.me", "burpcollaborator.net",
        "canarytokens.com", "requestcatcher.com", "beeceptor.com"
    )),
    ("chat-webhook", _CHAT, (
        "discord.com", "discordapp.com", "api.telegram.org", "hooks.slack.com"
    )),
)
_TABLE: dict[str, tuple[str, str]] = {
    domain: (category, reason) for category, reason, domains in _GROUPS for domain in domains
}

CHANNELS: tuple[Channel, ...] = tuple(
    Channel(d, cat, why) for d, (cat, why) in sorted(_TABLE.items())
)


def channel_for_host(host: str) -> Channel | None:
    """The channel a (normalised) host name belongs to, if any."""
    rest = host
    while True:
        if rest in _TABLE:
            cat, why = _TABLE[rest]
            return Channel(rest, cat, why)
        if "." not in rest:
            return None
        rest = rest.split(".", 1)[1]


def channels_opened_by(pattern: DomainPattern) -> list[Channel]:
    """Channels an allow entry reaches: the entry lies in one, or a wildcard covers one."""
    found = channel_for_host(pattern.name)
    if found is not None:
        return [found]
    if pattern.wildcard:
        return [c for c in CHANNELS if c.domain.endswith("." + pattern.name)]
    return []
