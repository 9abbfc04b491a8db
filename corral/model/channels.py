"""Known exfiltration and fronting channels: paste sites, tunnels, shared CDN fronts, DoH,
object-storage endpoints of every provider form, and TLDs with a record of abuse.

Used by the policy linter (a warning when an allow entry opens one of them) and by the review loop
(a risk flag on a destination). Data, not logic: extend the tables, not the code. Names are
matched by suffix (``_GROUPS``); provider endpoints whose region or bucket sits inside the name
by a pattern (``_PATTERNS``), with a probe label that tells the linter whether a wildcard
reaches it.
"""

from __future__ import annotations

import re
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
_STORE = ("object storage endpoint: any account's bucket sits behind the same names, so an "
          "upload here can land in an attacker's bucket")

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
        "pages.dev", "vercel.app", "netlify.app", "web.app", "firebaseapp.com", "b-cdn.net"
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
    ("storage", _STORE, (
        # Azure Storage (blob, Data Lake, files, static sites; public, government, China clouds)
        "blob.core.windows.net", "dfs.core.windows.net", "file.core.windows.net",
        "web.core.windows.net", "blob.core.usgovcloudapi.net", "blob.core.chinacloudapi.cn",
        # Google Cloud Storage and Firebase storage
        "storage.googleapis.com", "storage.cloud.google.com", "firebasestorage.googleapis.com",
        # Cloudflare R2, Backblaze B2, and S3-compatible providers
        "r2.cloudflarestorage.com", "r2.dev", "backblazeb2.com", "digitaloceanspaces.com",
        "wasabisys.com", "linodeobjects.com", "your-objectstorage.com", "storjshare.io",
        "filebase.com", "cloud-object-storage.appdomain.cloud", "objectstorage.oraclecloud.com",
        "myqcloud.com", "scw.cloud", "exo.io", "io.cloud.ovh.net", "minio.io",
    )),
)

# (regex over the whole host, probe label, shown as, category, reason). A wildcard ``*.X`` opens
# the channel when ``<probe>.X`` matches the regex.
_PATTERNS: tuple[tuple[str, str, str, str, str], ...] = (
    # Amazon S3, every form: global and regional, path and virtual-hosted style, legacy dash
    # regions, dualstack, accelerate, website, access points, FIPS, Express One Zone, China
    (r"(?:[a-z0-9.-]+\.)?s3[a-z0-9-]*(?:\.[a-z0-9-]+)*\.amazonaws\.com(?:\.cn)?", "s3",
     "s3.amazonaws.com (any S3 endpoint form)", "storage", _STORE),
    # Alibaba Cloud OSS: oss-<region>.aliyuncs.com and <bucket>.oss-<region>.aliyuncs.com
    (r"(?:[a-z0-9.-]+\.)?oss-[a-z0-9-]+\.aliyuncs\.com", "oss-cn-hangzhou",
     "oss-<region>.aliyuncs.com", "storage", _STORE),
    # Huawei OBS: obs.<region>.myhuaweicloud.com
    (r"(?:[a-z0-9.-]+\.)?obs\.[a-z0-9-]+\.myhuaweicloud\.com", "obs",
     "obs.<region>.myhuaweicloud.com", "storage", _STORE),
    # AWS Lambda function URLs and API Gateway: any account's code behind shared names
    (r"[a-z0-9]+\.lambda-url\.[a-z0-9-]+\.on\.aws", "x.lambda-url.us-east-1",
     "*.lambda-url.*.on.aws", "cdn-front", _FRONT),
    (r"[a-z0-9]+\.execute-api\.[a-z0-9-]+\.amazonaws\.com", "x.execute-api.us-east-1",
     "*.execute-api.*.amazonaws.com", "cdn-front", _FRONT),
)
_COMPILED = tuple((re.compile(rx), probe, shown, cat, why)
                  for rx, probe, shown, cat, why in _PATTERNS)

# TLDs whose registrations are mostly abusive, by the ratio of bad to all domains seen (not by
# count, which only follows a TLD's size). Source: Spamhaus, "The World's Most Abused TLDs"
# (badness-index snapshots of July 2016, October 2017 and February 2020), plus the formerly
# free Freenom ccTLDs (.tk .ml .ga .cf .gq). A TLD merely new to a fleet is no risk.
ABUSED_TLDS_SOURCE = ("Spamhaus 'The World's Most Abused TLDs' (snapshots 2016-07, 2017-10, "
                      "2020-02) and the Freenom free ccTLDs")
ABUSED_TLDS_DATE = "2020-02"
ABUSED_TLDS: frozenset[str] = frozenset((
    "download", "top", "tokyo", "work", "gdn", "click", "science", "accountant", "date",
    "review", "men", "loan", "live", "tk", "ml", "ga", "cf", "gq",
))
_TABLE: dict[str, tuple[str, str]] = {
    domain: (category, reason) for category, reason, domains in _GROUPS for domain in domains
}

CHANNELS: tuple[Channel, ...] = tuple(
    Channel(d, cat, why) for d, (cat, why) in sorted(_TABLE.items())
)


CATEGORIES: frozenset[str] = frozenset(
    {c for c, _, _ in _GROUPS} | {p[3] for p in _PATTERNS})


def channel_for_host(host: str) -> Channel | None:
    """The channel a (normalised) host name belongs to, if any."""
    rest = host
    while True:
        if rest in _TABLE:
            cat, why = _TABLE[rest]
            return Channel(rest, cat, why)
        if "." not in rest:
            break
        rest = rest.split(".", 1)[1]
    for rx, _probe, shown, cat, why in _COMPILED:
        if rx.fullmatch(host):
            return Channel(shown, cat, why)
    return None


def channels_opened_by(pattern: DomainPattern) -> list[Channel]:
    """Channels an allow entry reaches: the entry lies in one, or a wildcard covers one."""
    found = channel_for_host(pattern.name)
    if found is not None:
        return [found]
    if not pattern.wildcard:
        return []
    out = [c for c in CHANNELS if c.domain.endswith("." + pattern.name)]
    out += [Channel(shown, cat, why) for rx, probe, shown, cat, why in _COMPILED
            if rx.fullmatch(f"{probe}.{pattern.name}")]
    return out
