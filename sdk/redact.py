"""Secrets never leave the machine in clear: redaction of parameters, env vars, argv and console lines.

Two signals mark a secret: a *name* that says so (``api_key``, ``DB_PASSWORD``, ``--hf-token``)
and a *value* that looks like one (AWS access keys, GitHub/Hugging Face/OpenAI tokens, PEM private
keys, JWTs, URLs carrying a password). A redacted value keeps its shape (``<redacted>``) so a
reader can tell a secret was there.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

REDACTED = "<redacted>"

_SECRET_WORDS = (r"token|passwd|password|passphrase|secret|api[_-]?key|apikey|access[_-]?key|credential"
                 r"|private[_-]?key|auth|session[_-]?key|signature")
_SECRET_NAME = re.compile(rf"({_SECRET_WORDS})", re.IGNORECASE)
_NOT_SECRET_NAME = re.compile(r"(^|_)(max_tokens?|num_tokens?|tokens?_per|tokenizer\w*|n_tokens?|author\w*"
                              r"|auth_?(url|host|method|type))($|_)", re.IGNORECASE)

_VALUE_PATTERNS = [
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|$)", re.DOTALL),
    re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}\b"),
    re.compile(r"\bgithub_pat_[A-Za-z0-9_]{20,}\b"),
    re.compile(r"\bhf_[A-Za-z0-9]{20,}\b"),
    re.compile(r"\bsk-[A-Za-z0-9_-]{16,}\b"),
    re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b"),
    re.compile(r"\bfd_[A-Za-z0-9_-]{16,}\b"),
    re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\b"),
]
_PEM_BEGIN = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")
_PEM_END = re.compile(r"-----END [A-Z ]*PRIVATE KEY-----")
_URL_PASSWORD = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*):([^@/\s]+)@")
_ASSIGNMENT = re.compile(
    rf"(?P<key>[\w.-]*(?:{_SECRET_WORDS})[\w.-]*)(?P<sep>\"?'?\s*[=:]\s*|\s+)(?P<value>\"[^\"]*\"|'[^']*'|[^\s,;}}]+)",
    re.IGNORECASE)


def is_secret_name(name: str) -> bool:
    """Whether a parameter, option or variable name says that its value is a secret."""
    return bool(_SECRET_NAME.search(name)) and not _NOT_SECRET_NAME.search(name)


MIN_KNOWN_SECRET = 5
"""Known secret values shorter than this are not masked in free text (too many false hits)."""


def redact_text(text: str, known: Iterable[str] = ()) -> str:
    """Replace every secret-looking value in free text (a console line, a config file, a URL).

    Args:
        text: the text to clean.
        known: values known to be secret (a ``--password`` argument, a ``*_TOKEN`` env var);
            they are masked wherever they appear, as CI systems mask their secrets in logs.
    """
    if not text:
        return text
    for secret in known:
        if secret in text:
            text = text.replace(secret, REDACTED)
    for pattern in _VALUE_PATTERNS:
        text = pattern.sub(REDACTED, text)
    text = _URL_PASSWORD.sub(rf"\1:{REDACTED}@", text)

    def _assignment(match: re.Match[str]) -> str:
        key, sep, value = match.group("key", "sep", "value")
        if not is_secret_name(key) or value == REDACTED or (sep.isspace() and not key.startswith("-")):
            return match.group(0)
        return f"{key}{sep}{REDACTED}"

    return _ASSIGNMENT.sub(_assignment, text)


def redact_value(name: str, value: Any) -> Any:
    """A parameter value as it may be stored: secret names hide the value, strings are scanned."""
    if is_secret_name(name) and value not in (None, "", False):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return redact_mapping(value)
    if isinstance(value, list):
        return [redact_value(name, v) for v in value]
    return value


def redact_mapping(values: Mapping[str, Any]) -> dict[str, Any]:
    """Redact a flat or nested mapping (env vars, a connected dict) by key and by value."""
    return {key: redact_value(str(key), value) for key, value in values.items()}


def redact_argv(argv: Sequence[str]) -> list[str]:
    """Redact a command line: ``--api-key X``, ``--api-key=X``, ``TOKEN=X`` and secret-looking values."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append(REDACTED)
            hide_next = False
            continue
        if arg.startswith("-") and "=" in arg:
            option, _, value = arg.partition("=")
            out.append(f"{option}={REDACTED}" if is_secret_name(option) else f"{option}={redact_text(value)}")
        elif arg.startswith("-") and is_secret_name(arg):
            out.append(arg)
            hide_next = True
        else:
            out.append(redact_text(arg))
    return out


def redact_hyperparams(sections: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """Redact ``{section: {name: {"value": v, "type": t}}}`` as the task document stores parameters."""
    return {section: {name: {**param, "value": redact_value(name, param.get("value"))}
                      for name, param in params.items()}
            for section, params in sections.items()}


def known_secrets(hyperparams: Mapping[str, Any] | None = None, env: Mapping[str, Any] | None = None,
                  argv: Sequence[str] = ()) -> list[str]:
    """Values that their names mark as secret, to be masked wherever else they show up.

    Returns:
        the distinct values, longest first (so a secret containing another is masked whole).
    """
    found: set[str] = set()
    for params in (hyperparams or {}).values():
        for name, item in (params or {}).items():
            value = item.get("value") if isinstance(item, Mapping) else item
            if is_secret_name(str(name)) and value not in (None, ""):
                found.add(str(value))
    for name, value in (env or {}).items():
        if is_secret_name(str(name)) and value:
            found.add(str(value))
    for option, value in zip(argv, list(argv)[1:]):
        if option.startswith("-") and "=" not in option and is_secret_name(option):
            found.add(value)
    for arg in argv:
        option, eq, value = arg.partition("=")
        if eq and option.startswith("-") and is_secret_name(option) and value:
            found.add(value)
    return sorted((v for v in found if len(v) >= MIN_KNOWN_SECRET and v != REDACTED), key=len, reverse=True)


def redact_console(lines: Iterable[tuple[str, str, float]], known: Iterable[str],
                   open_blocks: dict[str, bool]) -> list[dict[str, Any]]:
    """Redact console lines; a private key printed over several lines is hidden whole.

    Args:
        lines: ``(line, stream, ts)`` in order.
        known: secret values to mask (see :func:`known_secrets`).
        open_blocks: per stream, whether a private key block is open; updated in place so the
            state carries over from one batch to the next.
    """
    known = list(known)
    out = []
    for line, stream, ts in lines:
        if open_blocks.get(stream):
            if _PEM_END.search(line):
                open_blocks[stream] = False
            line = REDACTED
        elif _PEM_BEGIN.search(line) and not _PEM_END.search(line):
            open_blocks[stream] = True
            line = redact_text(line, known)
        else:
            line = redact_text(line, known)
        out.append({"line": line, "stream": stream, "ts": ts})
    return out
