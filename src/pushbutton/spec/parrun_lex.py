"""Reading the loop nest of an R or MATLAB-language script (`pb parrun script.R / script.m`)
without running it: a tokenizer for each language (strings, comments, brackets, keywords) and
the top-level statements, enough to find the leading `for` nest, its loop variables, the text
of each loop's iterable (with its place in the file) and the innermost body. Nothing is
evaluated here (parrun_lang.py reads literal iterables or asks the interpreter).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from pushbutton.core.errors import SpecError


@dataclass
class Tok:
    kind: str      # name, kw, num, str, op, nl
    text: str
    start: int     # offsets into the script text
    end: int
    line: int
    space: bool = False   # whitespace (or a line break) right before it


@dataclass
class Header:
    var: str
    line: int
    expr: str                 # the iterable as written
    span: tuple               # (start, end) offsets of the iterable's text
    toks: list                # its tokens


@dataclass
class Nest:
    headers: list
    start: int                # offset of the first `for`
    line: int
    body: tuple               # (start, end) offsets of the innermost body
    body_block: bool          # R: the body is a { } block
    body_toks: list
    stmts: list = field(default_factory=list)   # (offset, line, first token, tokens) of
    #                                              each top-level statement before the nest
    inner: list = field(default_factory=list)   # Octave: the tokens of the statements
    #                                              inside blocks before the nest


def _err(path, line, msg, fix):
    return SpecError(msg, file=f"{path}:{line}" if line else str(path), fix=fix)


_FIX_SYNTAX = "fix the script so that it runs as it is"


# -- R -----------------------------------------------------------------------------------------
R_KEYWORDS = {"if", "else", "repeat", "while", "function", "for", "in", "next", "break"}
_R_OPS = sorted(["<<-", "->>", "|>", "<-", "->", "<=", ">=", "==", "!=", "&&", "||", ":::",
                 "::", "\\"] + list("+-*/^<>=!&|~?:$@(){}[],;"), key=len, reverse=True)
_R_NUM = re.compile(r"0[xX][0-9a-fA-F]+[Li]?|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?[Li]?")
_R_NAME = re.compile(r"(?:[^\W\d]|\.(?!\d))[\w.]*")
_R_RAW = re.compile(r"[rR]([\"'])(-*)([(\[{])")


def r_tokens(src: str, path) -> list:
    out, i, n, line, space = [], 0, len(src), 1, True
    closing = {"(": ")", "[": "]", "{": "}"}
    while i < n:
        c = src[i]
        if c == "\n":
            out.append(Tok("nl", "\n", i, i + 1, line, space))
            line += 1
            i += 1
            space = True
            continue
        if c in " \t\r\f":
            i += 1
            space = True
            continue
        if c == "#":
            j = src.find("\n", i)
            i = n if j < 0 else j
            continue
        start, l0 = i, line
        m = _R_RAW.match(src, i)
        if m:
            end = closing[m.group(3)] + m.group(2) + m.group(1)
            j = src.find(end, m.end())
            if j < 0:
                raise _err(path, l0, "a raw string that is never closed", _FIX_SYNTAX)
            i = j + len(end)
            kind = "str"
        elif c in "\"'`":
            j = i + 1
            while j < n and src[j] != c:
                j += 2 if src[j] == "\\" else 1
            if j >= n:
                raise _err(path, l0, f"a {'name' if c == '`' else 'string'} that is never "
                           "closed", _FIX_SYNTAX)
            i = j + 1
            kind = "name" if c == "`" else "str"
        elif (m := _R_NUM.match(src, i)) and (c.isdigit() or c == "."):
            i, kind = m.end(), "num"
        elif (m := _R_NAME.match(src, i)):
            i = m.end()
            kind = "kw" if m.group() in R_KEYWORDS else "name"
        elif c == "%":
            j = src.find("%", i + 1)
            if j < 0 or "\n" in src[i:j]:
                raise _err(path, l0, "a %...% operator that is never closed", _FIX_SYNTAX)
            i, kind = j + 1, "op"
        else:
            op = next((o for o in _R_OPS if src.startswith(o, i)), None)
            if op is None:
                raise _err(path, l0, f"unexpected character {c!r}", _FIX_SYNTAX)
            i, kind = i + len(op), "op"
        text = src[start:i]
        out.append(Tok(kind, text, start, i, l0, space))
        line += text.count("\n")
        space = False
    return out


def _matches(toks, path) -> dict:
    """index of each opening bracket -> index of its closing one (and back)."""
    pairs, stack = {}, []
    opening = {")": "(", "]": "[", "}": "{"}
    for k, t in enumerate(toks):
        if t.kind != "op":
            continue
        if t.text in "([{":
            stack.append(k)
        elif t.text in ")]}":
            if not stack or toks[stack[-1]].text != opening[t.text]:
                raise _err(path, t.line, f"`{t.text}` closes nothing", _FIX_SYNTAX)
            o = stack.pop()
            pairs[o], pairs[k] = k, o
    if stack:
        t = toks[stack[-1]]
        raise _err(path, t.line, f"`{t.text}` is never closed", _FIX_SYNTAX)
    return pairs


_R_CONT = {"<<-", "->>", "|>", "<-", "->", "<=", ">=", "==", "!=", "&&", "||", ":::", "::",
           "+", "-", "*", "/", "^", "<", ">", "=", "!", "&", "|", "~", "?", ":", "$", "@", ","}


class _R:
    def __init__(self, toks, path):
        self.t, self.path, self.m = toks, path, _matches(toks, path)

    def skip_nl(self, i):
        while i < len(self.t) and self.t[i].kind == "nl":
            i += 1
        return i

    def after_head(self, i):
        """i at if/for/while/function: the index after its parenthesised head."""
        j = i + 1
        if j >= len(self.t) or self.t[j].text != "(":
            raise _err(self.path, self.t[i].line, f"`{self.t[i].text}` without `(`",
                       _FIX_SYNTAX)
        return self.m[j] + 1

    def expr(self, i, top):
        """The index right after the expression starting at i (a newline, `;`, `,` or a
        closing bracket ends it once it is complete)."""
        t, n, prev = self.t, len(self.t), None
        while i < n:
            tok = t[i]
            if tok.kind == "nl" or tok.text == ";":
                if prev is None or (prev.kind == "op" and prev.text in _R_CONT):
                    i += 1
                    continue
                return i
            if tok.kind == "op" and tok.text in ")]},":
                return i
            if tok.kind == "op" and tok.text in "([{":
                i = self.m[i] + 1
                prev = t[i - 1]
                continue
            if tok.kind == "kw" and tok.text in ("if", "for", "while", "function", "repeat"):
                j = self.after_head(i) if tok.text != "repeat" else i + 1
                j = self.expr(self.skip_nl(j), top)
                if tok.text == "if":
                    k = j if top else self.skip_nl(j)
                    if k < n and t[k].kind == "kw" and t[k].text == "else":
                        j = self.expr(self.skip_nl(k + 1), top)
                i, prev = j, t[j - 1]
                continue
            if tok.text == "\\" and i + 1 < n and t[i + 1].text == "(":   # \(x) lambda
                j = self.expr(self.skip_nl(self.m[i + 1] + 1), top)
                i, prev = j, t[j - 1]
                continue
            prev = tok
            i += 1
        return i

    def statements(self, i, end, top):
        out = []
        while True:
            while i < end and (self.t[i].kind == "nl" or self.t[i].text == ";"):
                i += 1
            if i >= end:
                return out
            j = self.expr(i, top)
            if j == i:
                tok = self.t[i]
                raise _err(self.path, tok.line, f"unexpected `{tok.text}`", _FIX_SYNTAX)
            out.append((i, j))
            i = j


def r_nest(src: str, path) -> Nest:
    toks = r_tokens(src, path)
    P = _R(toks, path)
    stmts = P.statements(0, len(toks), True)
    first = next((k for k, (a, _) in enumerate(stmts) if toks[a].text == "for"
                  and toks[a].kind == "kw"), None)
    if first is None:
        raise _err(path, None, "no top-level `for` loop: nothing names the grid",
                   "write the sweep as `for (x in c(...)) { ... }` at the top level (not "
                   "inside a function or an if)")
    pre = [(toks[a].start, toks[a].line, toks[a], toks[a:b]) for a, b in stmts[:first]]
    a, b = stmts[first]
    if first + 1 < len(stmts):
        tok = toks[stmts[first + 1][0]]
        raise _err(path, tok.line, "a statement after the loop nest: it would run once per "
                   "grid point instead of once after the sweep",
                   "move it to a separate script that reads `pb results` / `pb gather`; leave "
                   "the loops last")
    headers = []
    i = a
    while True:
        tok = toks[i]
        lp = i + 1
        rp = P.m[lp]
        inner = toks[lp + 1:rp]
        if len(inner) < 3 or inner[0].kind != "name" or inner[1].text != "in":
            raise _err(path, tok.line, "a `for` loop that is not `for (name in values)`",
                       _FIX_SYNTAX)
        it = inner[2:]
        span = (it[0].start, it[-1].end)
        headers.append(Header(inner[0].text.strip("`"), tok.line, src[span[0]:span[1]], span,
                              it))
        j = P.skip_nl(rp + 1)
        if toks[j].text == "{":
            close = P.m[j]
            body = P.statements(j + 1, close, False)
            if len(body) == 1 and toks[body[0][0]].text == "for" and \
                    toks[body[0][0]].kind == "kw" and _only_blank(toks, body[0][1], close):
                i = body[0][0]
                continue
            return Nest(headers, toks[a].start, toks[a].line, (toks[j].end, toks[close].start),
                        True, toks[j + 1:close], pre)
        end = P.expr(j, True)
        if toks[j].text == "for" and toks[j].kind == "kw":
            i = j
            continue
        return Nest(headers, toks[a].start, toks[a].line, (toks[j].start, toks[end - 1].end),
                    False, toks[j:end], pre)


def _only_blank(toks, i, end):
    return all(t.kind == "nl" or t.text == ";" for t in toks[i:end])


# -- MATLAB / Octave ---------------------------------------------------------------------------
M_OPEN = {"if", "for", "parfor", "while", "switch", "try", "function", "unwind_protect", "do",
          "classdef", "methods", "properties", "events", "enumeration", "spmd"}
M_CLOSE = {"end", "endif", "endfor", "endparfor", "endwhile", "endswitch", "end_try_catch",
           "endfunction", "end_unwind_protect", "until", "endclassdef", "endmethods",
           "endproperties", "endevents", "endenumeration", "endspmd"}
M_KEYWORDS = M_OPEN | M_CLOSE | {"else", "elseif", "case", "otherwise", "catch",
                                 "unwind_protect_cleanup", "break", "continue", "return",
                                 "global", "persistent"}
_M_OPS = sorted(["==", "~=", "!=", "<=", ">=", "&&", "||", ".*", "./", ".^", ".\\", ".'",
                 "++", "--", "+=", "-=", "*=", "/=", "^=", "**"]
                + list("+-*/\\^<>=&|~!@:(){}[],;.'"), key=len, reverse=True)
_M_NUM = re.compile(r"0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eEdD][+-]?\d+)?[ij]?")
_M_NAME = re.compile(r"[A-Za-z_]\w*")
_M_BLOCK_OPEN = re.compile(r"[ \t]*[%#]\{[ \t]*\r?$")
_M_BLOCK_CLOSE = re.compile(r"[ \t]*[%#]\}[ \t]*\r?$")


def m_tokens(src: str, path) -> list:
    out, i, n, line, space = [], 0, len(src), 1, True
    depth = []   # open brackets: inside [ ] and { } a space separates elements
    while i < n:
        c = src[i]
        bol = i == 0 or src[i - 1] == "\n"
        if bol:
            eol = src.find("\n", i)
            eol = n if eol < 0 else eol
            if _M_BLOCK_OPEN.match(src, i, eol):   # %{ ... %} on lines of their own
                lvl, j = 0, i
                while j < n:
                    e = src.find("\n", j)
                    e = n if e < 0 else e
                    if _M_BLOCK_OPEN.match(src, j, e):
                        lvl += 1
                    elif _M_BLOCK_CLOSE.match(src, j, e):
                        lvl -= 1
                        if lvl == 0:
                            break
                    j = e + 1
                if j >= n:
                    raise _err(path, line, "a %{ block comment that is never closed",
                               _FIX_SYNTAX)
                line += src.count("\n", i, e)
                i = e
                continue
        if c == "\n":
            out.append(Tok("nl", "\n", i, i + 1, line, space))
            line += 1
            i += 1
            space = True
            continue
        if c in " \t\r\f":
            i += 1
            space = True
            continue
        if c in "%#":
            j = src.find("\n", i)
            i = n if j < 0 else j
            continue
        if src.startswith("...", i):   # continuation: the rest of the line is a comment
            j = src.find("\n", i)
            if j < 0:
                break
            i = j + 1
            line += 1
            space = True
            continue
        start, l0 = i, line
        prev = out[-1] if out else None
        value_before = prev is not None and prev.kind != "nl" and (
            prev.kind in ("name", "num", "str") and not (prev.kind == "str" and
                                                        prev.text.startswith('"'))
            or prev.text in (")", "]", "}", "'", ".'") or
            (prev.kind == "kw" and prev.text == "end"))
        transpose = c == "'" and value_before and not (space and (depth and depth[-1] in "[{"
                                                                  or prev.kind == "kw"))
        if c == '"' or (c == "'" and not transpose):
            j = i + 1
            while j < n:
                if src[j] == "\n":
                    raise _err(path, l0, "a string that is not closed on its line",
                               _FIX_SYNTAX)
                if c == '"' and src[j] == "\\":
                    j += 2
                    continue
                if src[j] == c:
                    if src.startswith(c + c, j):
                        j += 2
                        continue
                    break
                j += 1
            if j >= n:
                raise _err(path, l0, "a string that is never closed", _FIX_SYNTAX)
            i, kind = j + 1, "str"
        elif (m := _M_NUM.match(src, i)) and (c.isdigit() or c == "."):
            i, kind = m.end(), "num"
        elif (m := _M_NAME.match(src, i)):
            i = m.end()
            kind = "kw" if m.group() in M_KEYWORDS and not (prev and prev.text == ".") \
                and not (depth and m.group() == "end") else "name"
        else:
            op = next((o for o in _M_OPS if src.startswith(o, i)), None)
            if op is None:
                raise _err(path, l0, f"unexpected character {c!r}", _FIX_SYNTAX)
            i, kind = i + len(op), "op"
            if op in "([{":
                depth.append(op)
            elif op in ")]}" and depth:
                depth.pop()
        out.append(Tok(kind, src[start:i], start, i, l0, space))
        space = False
    return out


def _m_statements(toks, path):
    """Top-level-aware statements: [(first index, end index, block depth at the start)]; a
    statement ends at a newline, `,` or `;` outside brackets; block keywords open and close."""
    out, depth, bracket, i, n = [], 0, 0, 0, len(toks)
    while i < n:
        while i < n and (toks[i].kind == "nl" or toks[i].text in (",", ";")):
            i += 1
        if i >= n:
            break
        start, d0 = i, depth
        t = toks[i]
        if t.kind == "kw":
            if t.text in M_OPEN:
                depth += 1
            elif t.text in M_CLOSE:
                depth -= 1
                if depth < 0:
                    raise _err(path, t.line, f"`{t.text}` closes no block", _FIX_SYNTAX)
                d0 = depth
        stop = None
        if t.kind == "kw" and t.text in ("for", "parfor") and i + 1 < n and \
                toks[i + 1].text == "(":   # `for (i = 1:3) body, end`: the head ends at `)`
            stop = _close_of(toks, i + 1) + 1
        while i < n:
            t = toks[i]
            if stop is not None and i == stop:
                break
            if t.kind == "op" and t.text in "([{":
                bracket += 1
            elif t.kind == "op" and t.text in ")]}":
                bracket -= 1
            elif bracket <= 0 and (t.kind == "nl" or t.text in (",", ";")):
                break
            i += 1
        out.append((start, i, d0))
    if depth:
        raise _err(path, toks[-1].line if toks else None, "a block (if/for/while/function) "
                   "that is never closed with `end`", _FIX_SYNTAX)
    return out


def _close_of(toks, i):
    lvl = 0
    for j in range(i, len(toks)):
        if toks[j].kind == "op" and toks[j].text in "([{":
            lvl += 1
        elif toks[j].kind == "op" and toks[j].text in ")]}":
            lvl -= 1
            if lvl == 0:
                return j
    return len(toks) - 1


def m_nest(src: str, path) -> Nest:
    toks = m_tokens(src, path)
    stmts = _m_statements(toks, path)
    first = next((k for k, (a, _, d) in enumerate(stmts) if d == 0 and toks[a].kind == "kw"
                  and toks[a].text in ("for", "parfor")), None)
    if first is None:
        raise _err(path, None, "no top-level `for` loop: nothing names the grid",
                   "write the sweep as `for x = [...] ... end` at the top level (not inside a "
                   "function or an if)")
    pre = [(toks[a].start, toks[a].line, toks[a], toks[a:b]) for a, b, d in stmts[:first]
           if d == 0
           and not (toks[a].kind == "kw" and toks[a].text in M_CLOSE)]
    inner = [toks[a:b] for a, b, d in stmts[:first] if d > 0]
    headers, k = [], first
    while True:
        a, b, d = stmts[k]
        tok = toks[a]
        h = toks[a + 1:b]
        if h and h[0].text == "(" and h[-1].text == ")":
            h = h[1:-1]
        if len(h) < 3 or h[0].kind != "name" or h[1].text != "=":
            raise _err(path, tok.line, "a `for` loop that is not `for name = values`",
                       "write `for x = [1 2 3]` (one loop variable)")
        it = h[2:]
        span = (it[0].start, it[-1].end)
        headers.append(Header(h[0].text, tok.line, src[span[0]:span[1]], span, it))
        # the body: the statements up to the `end` that closes this loop
        j, body = k + 1, []
        while j < len(stmts):
            sa, sb, sd = stmts[j]
            if sd == d and toks[sa].kind == "kw" and toks[sa].text in M_CLOSE:
                break
            if sd == d + 1 and not (toks[sa].kind == "kw" and toks[sa].text in M_CLOSE):
                body.append(j)
            j += 1
        if j >= len(stmts):
            raise _err(path, tok.line, "this loop is never closed with `end`", _FIX_SYNTAX)
        close = stmts[j][0]
        if len(body) == 1 and toks[stmts[body[0]][0]].kind == "kw" and \
                toks[stmts[body[0]][0]].text in ("for", "parfor"):
            k = body[0]
            continue
        sep = b < len(toks) and (toks[b].kind == "nl" or toks[b].text in (",", ";"))
        body_start = toks[b].end if sep else toks[b - 1].end
        nest = Nest(headers, toks[stmts[first][0]].start, toks[stmts[first][0]].line,
                    (body_start, toks[close].start), True,
                    toks[stmts[k][1]:close], pre, inner)
        break
    # after the outermost loop's end: nothing but comments
    depth_close = None
    for idx in range(first + 1, len(stmts)):
        sa, sb, sd = stmts[idx]
        if sd == 0 and toks[sa].kind == "kw" and toks[sa].text in M_CLOSE:
            depth_close = idx
            break
    rest = [s for s in stmts[depth_close + 1:]] if depth_close is not None else []
    if rest:
        t = toks[rest[0][0]]
        raise _err(path, t.line, "a statement after the loop nest: it would run once per grid "
                   "point instead of once after the sweep",
                   "move it to a separate script that reads `pb results` / `pb gather`; leave "
                   "the loops last")
    return nest
