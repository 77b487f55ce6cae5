"""Reply extraction: the customer's new words, without quoted history or signature.

Where it sits: called by ``parse.parse_email`` on the readable parts of every fetched email
(``render_text``: HTML becomes text with its quote containers '> '-marked); the drafter only ever
sees what this returns. mail-parser-reply's multi-language quote-header tables are the main engine;
each extra rule names the corpus (talon, discourse, github, crisp, alfonsrv) that showed the gap.
Pure and bounded: it reads at most ``QUOTE_SCAN`` characters and ``MAX_HTML`` of HTML a message.
"""
from __future__ import annotations

import bisect
import html as html_lib
import itertools
import re
import textwrap

from inscriptis.html_engine import Inscriptis
from inscriptis.model.config import ParserConfig
from lxml import html as lxml_html
from mailparser_reply.constants import GENERIC_MAIL_SEPARATOR, MAIL_LANGUAGES

QUOTE_SCAN = 100_000  # reply extraction reads the first N characters only
MAX_HTML = 2 * 1024 * 1024  # HTML characters rendered per message, all parts together

def tidy(text: str) -> str:
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")


def _mpr_header_regex() -> re.Pattern:
    """mail-parser-reply's quote-header tables for every language it knows, as one regex."""
    parts = [GENERIC_MAIL_SEPARATOR]
    for lang, table in MAIL_LANGUAGES.items():
        for key in ("wrote_header", "from_header"):
            if lang != "david" and table.get(key):  # 'david' is one vendor's product, not a language
                parts.append(table[key].replace("{1,}", "{2,}"))  # pl: a lone "Do:" line is no header
    return re.compile("|".join(f"(?:{p})" for p in parts), re.MULTILINE | re.IGNORECASE)


_MPR_HEADERS = _mpr_header_regex()
_VERBS = (r"wrote|schrieb|a écrit|escribió|escreveu|ha scritto|schreef|geschreven|skrev|napisał\(a\)|napisał|"
          r"napisała|napsal\(a\)|napsal|пишет|написал|написала|пише|написав|đã viết|kirjoitti|írta|yazdı|pisze|"
          r"napísal|έγραψε|a scris|va escriure|kirjutas")
_WROTE = _VERBS + "|sent|writes"  # "sent" only after an "On <date>" opener: "order 123 was sent:" is a customer
_OPENER = r"(?:-+\s*)?(?:(?:on|am|le|el|il|op|em|den|på|dnia|w dniu|dne|в|vào|στις)\b|(?:[^\W\d]{2,4}\.?,?\s+)?\d)"
_WINDOW_HEADERS = [re.compile(p, re.IGNORECASE) for p in (  # folded over up to 6 lines
    rf"^{_OPENER}(?=.*\d).{{0,300}}\b(?:{_WROTE})(?!\w)(?:.{{0,80}}[@<>)])?\s*:$",  # On <date>, X <a>\nwrote:
    rf"^-{{2,}}.{{0,200}}\b(?:{_WROTE})\s*-{{2,}}$",  # "---- X wrote ----" (talon, Android)
    rf"^.{{0,150}}@.{{0,150}}\b(?:{_VERBS})(?!\w)(?=.*\d).{{0,150}}:$",  # "X <a> schrieb am <date>:" (discourse)
    r"^\d{4}[-/.]\d{1,2}[-/.]\d{1,2}\b.{0,120}<\s*\S+@\S+\s*>:?$",  # old Gmail "2011/4/7 X <a>" (talon)
)]
_LINE_HEADERS = [re.compile(p, re.IGNORECASE) for p in (
    rf"^.{{0,200}}[\d@].{{0,200}}\b(?:{_VERBS})\s*:$",  # "Sent from Samsung X <a> wrote:" (talon)
    r"^(?=.*\b\d{1,2}[:.]\d{2}\b)(?=.*\b(?:19|20)\d{2}\b).{0,300}[\w.+-]+@[\w.-]+>?\)?\s*:$",  # date+addr: (mail.ru)
    r"^[* ]*from:.{1,200}\b(?:sent|date):",  # From and Date on one line (talon)
    rf"^{_OPENER}(?=.*\d).{{0,300}}@.{{0,100}}\b(?:wrote|schrieb|a écrit|escribió|escreveu)$",  # no colon (crisp)
    r"^\d{4}-\d\d-\d\d \d\d?:\d\d GMT[+-]\d\d?:\d\d .{1,120}$",  # old Gmail without address (discourse)
    r"^\*?-{2,}\s*(?:original message|reply message|forwarded message|ursprüngliche nachricht|antwort nachricht|"
    r"weitergeleitete nachricht|oprindelig (?:meddelelse|besked)|original besked|videresendt (?:meddelelse|melding)|"
    r"message d'origine|message transféré|mensaje (?:original|reenviado)|messaggio (?:originale|inoltrato)|"
    r"oorspronkelijk bericht|origineel bericht|doorgestuurd bericht|originalmeddelande|vidarebefordrat meddelande|"
    r"opprinnelig melding|alkuperäinen viesti|wiadomość oryginalna|oryginalna wiadomość|mensagem (?:original|"
    r"encaminhada)|исходное сообщение|пересылаемое сообщение|původní zpráva|eredeti üzenet)\s*:?\s*-*\*?$",
    r"^(?:begin forwarded message|anfang der weitergeleiteten nachricht|début du message réexpédié)\s*:$",
)]
# Two or more "Label: value" lines = a pasted header block, also in languages mail-parser-reply lacks.
_LABEL = re.compile(r"^[* ]*(?:от|отправлено|кому|тема|дата|копия|від|надіслано|enviada|assunto|lähettäjä|lähetetty|"
                    r"vastaanottaja|aihe|feladó|elküldve|címzett|tárgy|差出人|送信日時|宛先|件名|kimden|gönderildi|kime|"
                    r"konu|de|envoyé|à|a|objet|sujet|copie|message du|fra|sendt|til|emne|from|sent|to|subject|date|cc)"
                    r"\s?:", re.IGNORECASE)
_FROM_LABEL = re.compile(r"^[* ]*(?:from|von|de|van|fra|från|da|od|от|від)\s?:", re.IGNORECASE)
_INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def _is_quote(line: str) -> bool:
    return line.lstrip().startswith(">")


def _has_text(lines: list[str]) -> bool:
    return any(line.strip() and not _is_quote(line) for line in lines)


def _clean(line: str) -> str:
    line = line if re.fullmatch(r"\s*>\s*:", line) else re.sub(r"^(?:>\s?)+", "", line)
    return _INVISIBLE.sub("", line).strip()[:400]


def _first_header(lines: list[str]) -> tuple[int, int] | None:
    """(first, last) line index of the earliest quote header, or None."""
    best = None
    # Lines that cannot belong to a header are blanked and all are capped: the mail-parser-reply regexes
    # are quadratic on long lines, and hostile input must not stall the poller.
    hint = [":" in line or "-----" in line for line in lines] + [False]
    stripped = "\n".join(line.strip()[:300] if hint[i] or hint[i + 1] else "" for i, line in enumerate(lines))
    match = _MPR_HEADERS.search(stripped)
    if match:
        start = match.start() + len(match.group()) - len(match.group().lstrip("\n"))
        best = (stripped.count("\n", 0, start), stripped.count("\n", 0, max(start, match.end() - 1)))
        for back in (1, 2):  # "*From:* bob [mailto:\n bob]\n*Sent:* ..." starts at the From line (talon)
            if best[0] >= back and _FROM_LABEL.match(lines[best[0] - back].strip()):
                best = (best[0] - back, best[1])
                break
    clean = [_clean(line) for line in lines[:best[1] + 10 if best else None]]
    for k, line in enumerate(clean[:best[1] + 1] if best else clean):
        found = None
        if line.endswith((":", "-", ">")):
            found = next(((k - size + 1, k) for size in range(1, min(6, k + 1) + 1)
                          if any(p.search(" ".join(clean[k - size + 1:k + 1])) for p in _WINDOW_HEADERS)), None)
        if not found and (any(p.search(line) for p in _LINE_HEADERS) or _LABEL.match(line) and (
                k + 1 < len(clean) and _LABEL.match(clean[k + 1]))):
            found = (k, k)
        if found or (best and k >= best[1]):
            best = min(found or best, best or found)
            break
    if not best:
        return None
    end = best[1]  # extend over the rest of a "Label: value" block (and a folded Subject inside it)
    while end + 1 < len(clean) and (_LABEL.match(clean[end + 1]) or clean[end + 1] and _LABEL.match(
            clean[end]) and end + 2 < len(clean) and _LABEL.match(clean[end + 2])):
        end += 1
    return best[0], end


def _reply_lines(lines: list[str], depth: int = 0) -> list[str]:
    hit = _first_header(lines)
    if not hit:
        return lines
    start, end = hit
    j = end + 1  # skip the '>' block the header introduces (and a stray unquoted line inside it)
    while j < len(lines) and (not lines[j].strip() or _is_quote(lines[j]) or
                              any(_is_quote(x) for x in lines[j + 1:j + 3]) and _is_quote(lines[j - 1])):
        j += 1
    quoted = any(_is_quote(x) for x in lines[end + 1:j])
    after = _reply_lines(lines[j:], depth + 1) if quoted and depth < 8 else []
    if _has_text(lines[:start]):  # text after a quoted block still belongs to the reply (talon)
        return lines[:start] + ([""] + after if _has_text(after) else [])
    if _has_text(after) or depth or quoted:
        return after
    rest = lines[end + 1:]  # message opens with a forward / unquoted history: its first body (discourse)
    nxt = _first_header(rest)
    return rest[:nxt[0]] if nxt else rest


# Mobile/app footers, whole line only ("Sent from my desk, is much easier ..." is a sentence: kept).
_SENT_FROM = [re.compile(p, re.IGNORECASE) for p in (
    r"^\(?(?:sent|envoyé|enviado|gesendet|verzonden|verstuurd|inviato|skickat|sendt|wysłano|odesláno|lähetetty)"
    r"(?: wirelessly)? (?:from|with|via|by|on|using|depuis|à partir de|de|desde|von|met|vanaf|van|da|dal|från|fra|z|ze)"
    r"(?: (?:my|mon|ma|mi|mein|meinem|mijn|il mio|min|mitt|mojego))?(?: [\w.&+-]+){1,4}[.!)]?"
    r"\s*(?:<https?://[^>]*>|\(https?://[^)]*\))?$",
    r"^(?:sent|envoyé|enviado) [^,]{0,80}\b(?:iphone|ipad|android|blackberry|samsung|galaxy|mobile|phone|device)[^,]*$",
    r"^(?:diese nachricht wurde )?von meine\w* .{1,60} gesendet\.?$",
    r"^(?:отправлено с|從我的|从我的|发自我的|iPhoneから送信).{0,40}$",
    r"^get (?:\[)?outlook for \w+",
)]
_SIG_DELIMITER = re.compile(r"^(?:--|-- |_{10,})\s*$")  # RFC 3676 §4.3 "-- " (also trimmed); Mailman/Outlook rule
_DASH_NAME = re.compile(r"^(?:-\s?|/)[^\W\d_][\w.'’]*(?: [^\W\d_][\w.'’]*){0,2}$")  # "-Abhishek Kona", "/John"
_DELIMITER_ONLY = re.compile(r"^(?:[-_*#~=+]\s*){2,}$|^[\u1427\u200b\u200c\u200d\ufeff\s]*$")
# A valediction alone on its line above a short block (name, title, phone) (alfonsrv, talon). "Thanks"
# is not one: it often carries content ("Thanks, that fixed it").
_VALEDICTION = re.compile(
    r"^(?:(?:best|kind|warm|warmest|many|with best|with kind)\s+regards|regards|best wishes|best|cheers|sincerely|"
    r"yours sincerely|yours truly|all the best|mit freundlichen gr(?:ü|ue)(?:ß|ss)en|(?:viele|beste|liebe|schöne) "
    r"gr(?:ü|ue)(?:ß|ss)e|gr(?:ü|ue)(?:ß|ss)e|gruß|lg|mfg|cordialement|bien cordialement|bien à vous|salutations|"
    r"(?:un )?saludos?|atentamente|cordialmente|cordiali saluti|distinti saluti|saluti|met vriendelijke groet(?:en)?|"
    r"groeten|mvg|(?:med )?venlig hilsen|hilsen|mvh|kh|vh|(?:med )?vänliga hälsningar|hälsningar|bästa hälsningar|"
    r"pozdrawiam|z poważaniem|z powazaniem|atenciosamente|cumprimentos|abraços)\s*[,.!]?$", re.IGNORECASE)


def _strip_signature(lines: list[str]) -> list[str]:
    left = [0] * (len(lines) + 1)  # non-blank lines from index i on
    for i in range(len(lines) - 1, -1, -1):
        left[i] = left[i + 1] + bool(lines[i].strip())
    for i, line in enumerate(lines):
        text, rest = line.strip(), left[i + 1]
        if i and left[0] - rest > 1 and _has_text(lines[:i]) and (
                _SIG_DELIMITER.match(line) and (rest <= 12 or text == "--")
                or len(text) < 120 and any(p.match(text) for p in _SENT_FROM)
                or _VALEDICTION.match(text) and rest <= 6 and not any(  # a P.S. or a question is content
                    re.match(r"p\.?s\b", x.strip(), re.I) or x.rstrip().endswith("?") for x in lines[i + 1:])):
            lines = lines[:i]
            break
    while lines and (_DELIMITER_ONLY.match(lines[-1].strip()) or _is_quote(lines[-1])):
        lines = lines[:-1]
    tail = [i for i, line in enumerate(lines) if line.strip()][-2:]
    if len(tail) == 2 and _DASH_NAME.match(lines[tail[1]].rstrip()) and not lines[tail[0]].lstrip().startswith(
            ("-", "/")):  # "-Name" closing the message, but not the last item of a "- item" list
        return lines[:tail[1]]
    return lines


_INLINE_ON = re.compile(rf"^(.*?\S)[\s-]*((?:on|am|le)\s(?=.*\d).{{5,250}}\b(?:{_VERBS})\s*:)$", re.IGNORECASE)


def extract_new_text(text: str, fallback: str | None = None) -> str:
    """The customer's new words: quoted history and signature removed; ``fallback`` (default: the
    whole text) when nothing would be left."""
    text = (text or "").replace("\r\n", "\n").replace("\r", "\n")
    lines = []
    for line in text[:QUOTE_SCAN].split("\n"):  # "reply On <date>, bob wrote:" shares a line (talon)
        match = _INLINE_ON.match(line) if len(line) < 300 and line.endswith(":") and not _is_quote(line) else None
        lines.extend(match.groups() if match else [line])
    reply = tidy("\n".join(_strip_signature(_reply_lines(lines))))
    return reply if reply.strip() else tidy(text if fallback is None else fallback)


# --- HTML parts ---------------------------------------------------------------------------------
def render_text(texts: list[tuple[str, str]], defects: list[str]) -> tuple[str, str]:
    """The full readable text of (kind, text) parts, and the new text (HTML quote containers are
    '> '-marked first). Rendering HTML is the slow step, so one budget covers all parts: a message
    of 300 HTML parts costs no more than one of 2 MB."""
    full, marked, budget = [], [], MAX_HTML
    for kind, body in texts:
        if kind == "html":
            if len(body) > budget:
                body, _ = body[:budget], defects.append(f"HTML truncated to {MAX_HTML} characters a message")
            budget -= len(body)
            plain, quoted = _html_to_text(body, defects)
        else:
            plain = quoted = body
        if plain.strip():
            full.append(plain), marked.append(quoted)
    full_text = tidy("\n\n".join(full))
    return full_text, extract_new_text("\n\n".join(marked), fallback=full_text)


# Quote containers of the big clients: Gmail, Apple Mail/Thunderbird (<blockquote type=cite>), Yahoo.
_QUOTE_XPATH = ("//blockquote | //*[contains(concat(' ', normalize-space(@class), ' '), ' gmail_quote ')]"
                " | //*[starts-with(@id, 'yahoo_quoted')] | //*[contains(@class, 'yahoo_quoted')]")
# huge_tree: without it libxml2 silently drops everything nested deeper than 256 elements (the
# customer's words with it); a tree too deep for inscriptis raises RecursionError instead, below.
_HTML_PARSER = lxml_html.HTMLParser(huge_tree=True)


def _html_to_text(html: str, defects: list[str]) -> tuple[str, str]:
    try:
        tree = lxml_html.document_fromstring(re.sub(r"^\s*<\?xml[^>]*>", "", html) or "<p></p>", parser=_HTML_PARSER)
        for element in tree.xpath(_QUOTE_XPATH):
            element.set("data-dhq", "1")
        for element in tree.xpath("//hr"):  # inscriptis drops <hr>; Outlook separates the quote with one
            element.tag, element.text = "div", "_" * 32
        engine = Inscriptis(tree, ParserConfig(annotation_rules={"#data-dhq": ["quote"]}))
        text, spans = engine.get_text(), [(a.start, a.end) for a in engine.get_annotations()]
    except Exception as exc:  # RecursionError on trees nested thousands deep, ParserError on no HTML
        defects.append(f"HTML not parseable ({type(exc).__name__}); tags stripped")
        # [^<>]: a tag can't hold "<", so a failed match stops at the next one; [^>] read to the end
        # of the text from every "<", and "<!--" * 200,000 took 103 s.
        text, spans = html_lib.unescape(re.sub(r"<[^<>]*>", " ", html)), []
    lines = text.split("\n")
    indent = min((len(x) - len(x.lstrip(" ")) for x in lines if x.strip()), default=0)  # inscriptis pads
    quoted = _lines_in_spans(lines, spans)
    marked = ["> " * bool(line.strip() and inside) + line[indent:] for line, inside in zip(lines, quoted)]
    return textwrap.dedent(text), "\n".join(marked)


def _lines_in_spans(lines: list[str], spans: list[tuple[int, int]]) -> list[int]:
    """How many quote spans touch each line. Sorted line starts and a running sum keep this linear:
    50,000 sibling <blockquote>s must not cost 50,000 x 50,000 comparisons."""
    starts, pos = [], 0
    for line in lines:
        starts.append(pos)
        pos += len(line) + 1
    cover = [0] * (len(lines) + 1)
    for start, end in spans:
        first = max(bisect.bisect_right(starts, start) - 1, 0)
        if start >= starts[first] + len(lines[first]):  # the span begins at this line's end
            first += 1
        last = bisect.bisect_left(starts, end) - 1
        if first <= last:
            cover[first], cover[last + 1] = cover[first] + 1, cover[last + 1] - 1
    return list(itertools.accumulate(cover))[:len(lines)]
