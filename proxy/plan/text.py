"""The statement text, read the way Neo4j 5.26's own lexer reads it.

Neo4j's plan does not carry everything the policy needs: a ``LoadCSV`` operator's details name
only its row variable, never its source. For that one fact the gateway reads the statement text,
and a scanner that reads text differently from Neo4j is a way around the policy (a statement
loads one URL while the policy is asked about another). So this module mirrors Neo4j's lexer
exactly, in the order Neo4j applies it (each rule checked against the real server in
``tests/plan/test_text.py``, and by a generator that compares what this module finds with what
Neo4j actually fetches):

1. Unicode escapes are replaced *before* lexing, anywhere in the text (strings, comments, names,
   keywords), as Java does: a backslash preceded by an even number of backslashes, then ``u``
   and four hex digits. A character produced by an escape never starts another escape.
2. ``//`` comments end at ``\\n`` or ``\\r`` (only those: every other code point was tried);
   ``/* ... */`` comments do not nest.
3. Strings in single or double quotes; a backslash always takes the next character with it.
4. Names in backticks, where a doubled backtick stands for one.

Anything this module cannot read exactly is reported as unknown (:data:`DYNAMIC`), never guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

DYNAMIC = "<dynamic>"

_ESCAPE = re.compile(r"\\u([0-9A-Fa-f]{4})")
_WORD = re.compile(r"[^\W]+")  # letters, digits and underscores of any script
TokenKind = Literal["word", "string", "name", "parameter", "symbol"]


class UnreadableText(ValueError):
    """The text is not something Neo4j would have accepted (it planned it, so: never trust)."""


@dataclass(frozen=True, slots=True)
class Token:
    """One token: its kind and its text (strings and names without their quotes, unescaped
    for names; strings keep their backslash escapes, see :func:`literal`)."""

    kind: TokenKind
    text: str
    # Where it starts in the text the lexer read (its Unicode escapes replaced).
    start: int = field(default=0, compare=False)


def decode_unicode_escapes(text: str) -> str:
    """The text with Java-style ``\\uXXXX`` escapes replaced, as Neo4j does before lexing."""
    if "\\u" not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "\\":
            out.append(char)
            i += 1
            continue
        run = i
        while run < len(text) and text[run] == "\\":
            run += 1
        # Of a run of backslashes, only the last can start an escape, and only when an even
        # number of backslashes precede it.
        out.append(text[i : run - 1])
        last = run - 1
        if (last - i) % 2 == 0 and text.startswith("u", run):
            match = _ESCAPE.match(text, last)
            if match is None:
                raise UnreadableText("a \\u escape without four hexadecimal digits")
            out.append(chr(int(match.group(1), 16)))
            i = match.end()
        else:
            out.append("\\")
            i = run
    return "".join(out)


def tokens(statement: str) -> list[Token]:
    """The statement's tokens, comments and whitespace dropped."""
    return _lexed(decode_unicode_escapes(statement))


def _lexed(text: str) -> list[Token]:
    """The tokens of a text whose Unicode escapes are already replaced."""
    found: list[Token] = []
    i, end = 0, len(text)
    while i < end:
        char = text[i]
        if char.isspace():
            i += 1
        elif text.startswith("//", i):
            i = _line_end(text, i)
        elif text.startswith("/*", i):
            close = text.find("*/", i + 2)
            if close < 0:
                raise UnreadableText("an unterminated comment")
            i = close + 2
        elif char in "'\"":
            j = i + 1
            while j < end and text[j] != char:
                j += 2 if text[j] == "\\" else 1
            if j >= end:
                raise UnreadableText("an unterminated string")
            found.append(Token("string", text[i + 1 : j], i))
            i = j + 1
        elif char == "`":
            start = i
            name, i = _quoted_name(text, i)
            found.append(Token("name", name, start))
        elif char == "$":
            if text.startswith("`", i + 1):
                name, i = _quoted_name(text, i + 1)
                found.append(Token("parameter", "$" + name))
            elif match := _WORD.match(text, i + 1):
                found.append(Token("parameter", "$" + match.group(0)))
                i = match.end()
            else:
                found.append(Token("symbol", "$"))
                i += 1
        elif match := _WORD.match(text, i):
            found.append(Token("word", match.group(0), i))
            i = match.end()
        else:
            found.append(Token("symbol", char))
            i += 1
    return found


def _line_end(text: str, i: int) -> int:
    ends = [j for j in (text.find("\n", i), text.find("\r", i)) if j >= 0]
    return min(ends) if ends else len(text)


def _quoted_name(text: str, i: int) -> tuple[str, int]:
    """The name in backticks starting at ``text[i]``, and where it ends."""
    parts: list[str] = []
    j = i + 1
    while True:
        close = text.find("`", j)
        if close < 0:
            raise UnreadableText("an unterminated quoted name")
        parts.append(text[j:close])
        if text.startswith("`", close + 1):
            parts.append("`")
            j = close + 2
            continue
        return "".join(parts), close + 1


def literal(token: Token) -> str | None:
    """A string token's value when it holds no escape at all; None when it does (an escape is
    read differently by different readers, so such a source is never matched to a grant)."""
    if token.kind != "string" or "\\" in token.text:
        return None
    return token.text


def load_csv_sources(statement: str) -> list[str]:
    """The source of each ``LOAD CSV ... FROM <source> AS`` in the text, in order.

    A source is a literal string's value, a ``$parameter``, or :data:`DYNAMIC` for anything
    else (an expression, a string with escapes)."""
    found = tokens(statement)
    words = [t.text.upper() if t.kind == "word" else None for t in found]
    sources: list[str] = []
    for i in range(len(found) - 1):
        if words[i] != "LOAD" or words[i + 1] != "CSV":
            continue
        j = i + 2
        if words[j : j + 2] == ["WITH", "HEADERS"]:
            j += 2
        if words[j : j + 1] != ["FROM"]:
            sources.append(DYNAMIC)
            continue
        source = found[j + 1 : j + 2]
        after = words[j + 2 : j + 3]
        if len(source) != 1 or after != ["AS"]:
            sources.append(DYNAMIC)
        elif source[0].kind == "parameter":
            sources.append(source[0].text)
        else:
            # A URL's password is decided, recorded and named in a refusal as ``******``.
            value = literal(source[0])
            sources.append(DYNAMIC if value is None else without_url_passwords(value))
    return sources


def namespaced_calls(statement: str) -> list[str]:
    """Every ``ns.name(`` the statement calls (names in backticks decoded). Neo4j's plan never
    prints a ``LOAD CSV`` source's expression, so the functions it calls are read from here."""
    found = tokens(statement)
    calls: list[str] = []
    for i, token in enumerate(found):
        after_dot = i > 0 and found[i - 1].kind == "symbol" and found[i - 1].text == "."
        if token.kind not in ("word", "name") or after_dot:
            continue
        parts, j = [token.text], i + 1
        while (
            j + 1 < len(found)
            and (found[j].kind, found[j].text) == ("symbol", ".")
            and found[j + 1].kind in ("word", "name")
        ):
            parts.append(found[j + 1].text)
            j += 2
        # A whole name in one pair of backticks calls the function of that name too.
        namespaced = len(parts) > 1 or (token.kind == "name" and "." in token.text)
        if namespaced and j < len(found) and (found[j].kind, found[j].text) == ("symbol", "("):
            calls.append(".".join(parts))
    return calls


def quoted_names(statement: str) -> list[str]:
    """Every name the statement writes in backticks (labels, types, keys, variables), decoded."""
    return [t.text for t in tokens(statement) if t.kind == "name"]


def cypher_prefix(found: list[Token]) -> tuple[list[str], int]:
    """The option names of the statement's leading ``CYPHER [version] [key=value ...]``
    (repeated or not), and the index of the first token after it."""
    options: list[str] = []
    i = 0
    while i < len(found) and found[i].kind == "word" and found[i].text.upper() == "CYPHER":
        i += 1
        if i < len(found) and found[i].kind == "word" and found[i].text.isdigit():
            i += 1
        while i + 2 < len(found) and found[i + 1].text == "=" and found[i].kind == "word":
            options.append(found[i].text)
            i += 3
    return options, i


def execution_mode(statement: str) -> str | None:
    """``EXPLAIN`` or ``PROFILE`` if the statement starts with one (after any ``CYPHER`` version
    and options), else ``None``; ``None`` too for text this lexer cannot read (Neo4j will refuse
    it, or the plan reader will)."""
    try:
        found = tokens(statement)
    except UnreadableText:
        return None
    _, i = cypher_prefix(found)
    if (
        i < len(found)
        and found[i].kind == "word"
        and found[i].text.upper() in ("EXPLAIN", "PROFILE")
    ):
        return found[i].text.upper()
    return None


# Statements that hold a secret name one in a word: Neo4j's ``SET PASSWORD``, ``PASSWORD FROM
# ... TO ...``, ``dbms.security.changePassword``; also a ``.password`` property compared or set.
_SECRET_WORD = "password"  # noqa: S105 (the word that marks one, not a secret)
REDACTED = "'******'"


def without_secrets(statement: str) -> str:
    """The statement as the gateway records and shows it: where a word or name says
    ``password`` (in any case, Unicode escapes read as Neo4j reads them), every string literal
    is replaced by ``'******'``, as Neo4j's own query log hides passwords, and the text is the one
    Neo4j lexes (escapes replaced). Text it cannot read is cut after that word. A URL's password
    (``https://user:<password>@host``, a ``LOAD CSV`` source's) is ``******`` too. Any other
    statement is returned as it is."""
    return without_url_passwords(_without_password_literals(statement))


# A URL's password: its user information after the first colon, up to the last "@" before the
# path (as URL parsers read it: a raw "@" in a password is the password's). The scheme begins at
# the first letter of its run of scheme characters (the leftmost start that matches), which is
# tried from the run's beginning only: tried at every letter, each try read to the run's end,
# a long run cost time in the square of its length (1 MiB of letters: minutes of the event loop).
_URL_PASSWORD = re.compile(
    r"(?<![A-Za-z0-9+.-])([0-9+.-]*+[A-Za-z][A-Za-z0-9+.-]*+://[^/?#\s:'\"`]*+):[^/?#\s'\"`]*@"
)


def without_url_passwords(text: str) -> str:
    """``text`` with the password of every URL in it (``scheme://user:password@``) replaced by
    ``******`` (escapes read as Neo4j reads them, where one hides a URL's password)."""
    read = text
    if "\\u" in text:
        try:
            read = decode_unicode_escapes(text)
        except UnreadableText:
            read = _ESCAPE.sub(lambda escape: chr(int(escape.group(1), 16)), text)
    if "@" not in read or "://" not in read:
        return text
    hidden = _URL_PASSWORD.sub(r"\1:******@", read)
    return text if hidden == read else hidden


def _without_password_literals(statement: str) -> str:
    if "\\u" not in statement and _SECRET_WORD not in statement.lower():
        return statement
    try:
        text = decode_unicode_escapes(statement)
    except UnreadableText:  # a broken escape, which Neo4j refuses: the others still read
        text = _ESCAPE.sub(lambda escape: chr(int(escape.group(1), 16)), statement)
    try:
        found = _lexed(text)
    except UnreadableText:
        at = text.lower().find(_SECRET_WORD)
        return statement if at < 0 else text[: at + len(_SECRET_WORD)] + " " + REDACTED
    if not any(t.kind in ("word", "name") and _SECRET_WORD in t.text.lower() for t in found):
        return statement
    parts: list[str] = []
    done = 0
    for token in found:
        if token.kind == "string":
            parts += [text[done : token.start], REDACTED]
            done = token.start + len(token.text) + 2
    return "".join(parts) + text[done:]
