"""The one HTML policy: what of an email's HTML may be shown to a person or sent out.

Customer HTML is cleaned with it when a mail is parsed; HTML an agent writes (replies, drafts,
forwards, templates) is cleaned with it when the command is read, so what is stored and what is
sent are the cleaned text. nh3 (ammonia) does the cleaning: no script, style, event handlers or
``javascript:`` links survive.
"""

from __future__ import annotations

from typing import Annotated

import nh3
from pydantic import AfterValidator

_TAGS = set(nh3.ALLOWED_TAGS) | {"font"}
_ATTRIBUTES: dict[str, set[str]] = {
    **{tag: set(attrs) for tag, attrs in nh3.ALLOWED_ATTRIBUTES.items()},
    "img": {"src", "alt", "width", "height", "title"},
    "td": {"colspan", "rowspan", "align", "valign", "width"},
    "th": {"colspan", "rowspan", "align", "valign", "width"},
    "table": {"width", "border", "cellpadding", "cellspacing"},
    "font": {"color", "size"},
}
_URL_SCHEMES = {"http", "https", "mailto", "tel", "cid"}


def sanitize_html(html: str) -> str:
    """HTML made safe to show to a person (no script, style, handlers, trackers' JS)."""
    return nh3.clean(
        html,
        tags=_TAGS,
        clean_content_tags={"script", "style", "title", "head"},
        attributes=_ATTRIBUTES,
        url_schemes=_URL_SCHEMES,
        strip_comments=True,
        link_rel="noopener noreferrer nofollow",
    )


SafeHtml = Annotated[str, AfterValidator(sanitize_html)]
"""HTML from a person: cleaned by the policy above as soon as a message carrying it is read."""
