"""Charsets: a MIME part's bytes to text, whatever its label says.

Used by ``channels.email.parse`` for every text part. Mail in the wild mislabels charsets
(Latin-1 labels on UTF-8, Korean and Japanese aliases, names Python has no codec for, names with
NULs in them), so the declared charset is tried first, then UTF-8, then charset-normalizer's
guess, then UTF-8 with replacement characters. Every fallback is noted in ``defects``; nothing
here raises.
"""
from __future__ import annotations

import codecs
import re

import charset_normalizer

_CHARSET_ALIASES = {"ks_c_5601-1987": "cp949", "euc-kr": "cp949", "shift_jis": "cp932", "x-sjis": "cp932",
                    "gb2312": "gb18030", "gbk": "gb18030", "iso-8859-8-i": "iso-8859-8", "windows-874": "cp874",
                    "x-mac-roman": "mac_roman", "iso-8859-1": "cp1252", "latin1": "cp1252", "utf8": "utf-8"}
_PREFERRED = ["utf_8", "cp1252", "iso8859_15", "iso8859_2", "cp1250", "cp1251", "koi8_r", "cp932", "euc_jp",
              "iso2022_jp", "gb18030", "big5", "cp949"]  # tie-break among equally plausible guesses


def decode_text(data: bytes, declared: str | None, defects: list[str]) -> str:
    """Declared charset, then UTF-8, then charset-normalizer's guess, then UTF-8 with replacement."""
    name = (declared or "").strip().strip("\"'").lower()
    codec = _CHARSET_ALIASES.get(name, name)
    try:
        codec = codecs.lookup(codec).name if codec and codecs.lookup(codec)._is_text_encoding else None
    except Exception:  # unknown (LookupError); a NUL (ValueError) or 8-bit byte in the name
        codec = None
    if codec == "undefined":  # Python's codec that refuses everything, by design
        codec = None
    if name and not codec:
        defects.append(f"unknown charset {name!r}")
    # A latin-1/ASCII label on valid UTF-8 is a classic mislabel (random 8-bit text is never valid UTF-8).
    if codec in ("cp1252", "iso8859-15", "ascii") and re.search(rb"[\x80-\xff]", data):
        try:
            text = data.decode("utf-8").replace("\x00", "")
        except UnicodeDecodeError:
            pass
        else:
            defects.append(f"declared charset {name} but body is UTF-8")
            return text
    for attempt in dict.fromkeys([codec] * bool(codec) + ["latin-1"] * (codec == "cp1252") + ["utf-8"]):
        try:
            return data.decode(attempt).replace("\x00", "")
        except Exception:  # UnicodeDecodeError; idna and punycode raise plain UnicodeError
            if attempt == codec:
                defects.append(f"body is not valid {name}")
    try:
        results = list(charset_normalizer.from_bytes(data[:65536]))
    except Exception:
        results = []
    if not results:
        defects.append("undecodable bytes replaced")
        return data.decode("utf-8", "replace").replace("\x00", "")
    least = min(r.chaos for r in results)
    tied = [r.encoding for r in results if r.chaos <= least + 0.01]
    guess = next((p for p in _PREFERRED if p in tied), tied[0])
    text = data.decode(guess, "replace")
    guess = "cp1252" if text == data.decode("cp1252", "replace") else guess  # same text: name the usual one
    defects.append(f"charset guessed as {guess}" + ("" if codec else " (none declared)"))
    return text.replace("\x00", "")
