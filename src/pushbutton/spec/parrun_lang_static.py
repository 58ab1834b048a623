"""The literal forms of an R or MATLAB/Octave loop's iterable, read without running anything
(`pb parrun script.R / script.m`, see parrun_lang.py). Each reader returns the values the
language's own `for` would walk, with the language's types (R: integer -> int, double ->
float; Octave: every number is a double, whole ones read as int), or None when the form is
not one of these: then the interpreter is asked (parrun_lang._evaluate), which is always right.

R:      5, 2L, "a", TRUE, a:b (whole a), c(literals), seq_len(n), seq_along(x), seq(a, b)
        (whole a, b), length(x), and names bound once in the preamble to such a value.
Octave: 5, a:b, a:s:b (whole numbers), [1 2 3], [1, 2, 3], {'a', "b", 1} (a cell: each
        value arrives as a 1x1 cell), numel(x) / length(x), and names bound to those.
"""
from __future__ import annotations

import math

# statements that may change any variable: after one of them nothing is known statically
_R_OPAQUE = {"assign", "rm", "eval", "evalq", "source", "sys.source", "load", "attach",
             "list2env", "local", "with", "within", "delayedAssign", "makeActiveBinding"}
_M_OPAQUE = {"clear", "clearvars", "load", "eval", "evalin", "assignin", "run", "source",
             "exist", "import"}


def _split_args(toks):
    """Top-level comma-separated groups of a token list (brackets balanced)."""
    out, cur, lvl = [], [], 0
    for t in toks:
        if t.kind == "op" and t.text in "([{":
            lvl += 1
        elif t.kind == "op" and t.text in ")]}":
            lvl -= 1
        if lvl == 0 and t.kind == "op" and t.text == ",":
            out.append(cur)
            cur = []
            continue
        cur.append(t)
    out.append(cur)
    return out


def _call(toks, names):
    """(function name, argument token lists) when toks is exactly `name(...)`, else None."""
    if len(toks) >= 3 and toks[0].kind == "name" and toks[0].text in names and \
            toks[1].text == "(" and toks[-1].text == ")":
        inner = toks[2:-1]
        lvl = 0
        for t in inner:   # the parentheses must be the call's own
            if t.kind == "op" and t.text in "([{":
                lvl += 1
            elif t.kind == "op" and t.text in ")]}":
                lvl -= 1
                if lvl < 0:
                    return None
        return toks[0].text, ([] if not inner else _split_args(inner))
    return None


def _whole(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and \
        math.isfinite(v) and float(v).is_integer()


# -- R -----------------------------------------------------------------------------------------
def _r_number(text):
    if text.endswith("i"):
        return None
    as_int = text.endswith("L")
    body = text[:-1] if as_int else text
    try:
        v = float(int(body, 16)) if body.lower().startswith("0x") else float(body)
    except ValueError:
        return None
    if as_int:
        return int(v) if v.is_integer() and abs(v) < 2**31 else None
    return v


def _r_string(text):
    if text[0] not in "\"'" or "\\" in text:
        return None
    return text[1:-1]


def _r_scalar(toks, consts):
    """One value, or None for a form that is not literal."""
    toks = [t for t in toks if t.kind != "nl"]
    if not toks:
        return None
    sign = 1
    if toks[0].text in "-+" and toks[0].kind == "op" and len(toks) == 2 and \
            toks[1].kind == "num":
        sign, toks = (-1 if toks[0].text == "-" else 1), toks[1:]
    if len(toks) == 1:
        t = toks[0]
        if t.kind == "num":
            v = _r_number(t.text)
            return None if v is None else sign * v
        if t.kind == "str":
            return _r_string(t.text)
        if t.kind == "name" and t.text in ("TRUE", "FALSE"):
            return t.text == "TRUE"
        if t.kind == "name" and t.text in consts and len(consts[t.text]) == 1:
            return consts[t.text][0]
        return None
    c = _call(toks, ("length",))
    if c and len(c[1]) == 1 and len(c[1][0]) == 1 and c[1][0][0].text in consts:
        return len(consts[c[1][0][0].text])
    return None


def _r_colon(toks, consts):
    lvl = 0
    for k, t in enumerate(toks):
        if t.kind == "op" and t.text in "([{":
            lvl += 1
        elif t.kind == "op" and t.text in ")]}":
            lvl -= 1
        elif lvl == 0 and t.kind == "op" and t.text == ":":
            a, b = _r_scalar(toks[:k], consts), _r_scalar(toks[k + 1:], consts)
            if not (_whole(a) and _whole(b)):
                return None
            a, b = int(a), int(b)
            return list(range(a, b + 1)) if a <= b else list(range(a, b - 1, -1))
    return None


def r_values(toks, consts):
    """The values of an R iterable, or None when it is not a literal form."""
    toks = [t for t in toks if t.kind != "nl"]
    if not toks:
        return None
    if len(toks) == 1 and toks[0].kind == "name" and toks[0].text in consts:
        return list(consts[toks[0].text])
    c = _call(toks, ("c", "seq_len", "seq_along", "seq"))
    if c:
        name, args = c
        if name == "c":
            vals = [_r_scalar(a, consts) for a in args if a]
            if not vals or any(v is None for v in vals) or len(vals) != len(args):
                return None
            kinds = {type(v) for v in vals}
            if kinds <= {int, float}:
                return [float(v) for v in vals] if float in kinds else vals
            return vals if len(kinds) == 1 else None
        if name == "seq_len" and len(args) == 1:
            n = _r_scalar(args[0], consts)
            return list(range(1, int(n) + 1)) if _whole(n) and n >= 0 else None
        if name == "seq_along" and len(args) == 1 and len(args[0]) == 1 and \
                args[0][0].text in consts:
            return list(range(1, len(consts[args[0][0].text]) + 1))
        if name == "seq" and len(args) == 2 and not any(
                len(a) > 1 and a[1].text == "=" for a in args):
            a, b = (_r_scalar(x, consts) for x in args)
            if _whole(a) and _whole(b):
                a, b = int(a), int(b)
                return list(range(a, b + 1)) if a <= b else list(range(a, b - 1, -1))
        return None
    v = _r_colon(toks, consts)
    if v is not None:
        return v
    v = _r_scalar(toks, consts)
    return None if v is None else [v]


def r_constants(stmts) -> dict:
    """Names bound to a literal form in the preamble and not touched since."""
    consts: dict = {}
    for *_, toks in stmts:
        toks = [t for t in toks if t.kind != "nl"]
        if any(t.kind == "name" and t.text in _R_OPAQUE for t in toks):
            consts.clear()
            continue
        target = None
        if len(toks) >= 3 and toks[0].kind == "name" and toks[1].text in ("<-", "="):
            target, value = toks[0].text.strip("`"), toks[2:]
        elif len(toks) >= 3 and toks[-1].kind == "name" and toks[-2].text == "->":
            target, value = toks[-1].text.strip("`"), toks[:-2]
        if target is not None:
            rest = value
            vals = r_values(value, consts)
        else:
            rest, vals = toks, None
        for k, t in enumerate(rest):   # what else this statement may change
            if t.kind != "name":
                continue
            nxt = rest[k + 1].text if k + 1 < len(rest) else ""
            prv = rest[k - 1].text if k else ""
            if nxt in ("<-", "<<-", "=", "[", "$", "@", "(", ")") or prv in ("->", "->>"):
                consts.pop(t.text.strip("`"), None)
        if target is not None:
            if vals is None:
                consts.pop(target, None)
            else:
                consts[target] = vals
    return consts


# -- MATLAB / Octave ---------------------------------------------------------------------------
def _m_num(v):
    return int(v) if float(v).is_integer() and abs(v) < 2**53 else v


def _m_number(text):
    if text[-1] in "ij":
        return None
    try:
        v = float(int(text, 16)) if text.lower().startswith("0x") else \
            float(text.replace("d", "e").replace("D", "e"))
    except ValueError:
        return None
    return _m_num(v) if math.isfinite(v) else None


def _m_string(text):
    q = text[0]
    if q == '"' and "\\" in text:
        return None
    return text[1:-1].replace(q + q, q)


def _m_scalar(toks, consts):
    toks = [t for t in toks if t.kind != "nl"]
    sign = 1
    if len(toks) == 2 and toks[0].kind == "op" and toks[0].text in "-+" and \
            toks[1].kind == "num":
        sign, toks = (-1 if toks[0].text == "-" else 1), toks[1:]
    if len(toks) == 1:
        t = toks[0]
        if t.kind == "num":
            v = _m_number(t.text)
            return None if v is None else sign * v
        if t.kind == "name" and t.text in consts:
            vals, wrap = consts[t.text]
            return vals[0] if len(vals) == 1 and wrap is None and \
                not isinstance(vals[0], str) else None
        if t.kind == "name" and t.text in ("true", "false"):
            return t.text == "true"
        return None
    c = _call(toks, ("numel", "length"))
    if c and len(c[1]) == 1 and len(c[1][0]) == 1 and c[1][0][0].text in consts:
        return len(consts[c[1][0][0].text][0])
    return None


def _m_elements(toks, consts, strings):
    """The elements of `[...]` / `{...}` (one row): numbers, and strings when allowed."""
    out, k = [], 0
    while k < len(toks):
        t = toks[k]
        if t.kind == "op" and t.text == ",":
            k += 1
            continue
        if t.kind == "op" and t.text in "-+" and k + 1 < len(toks) and \
                toks[k + 1].kind == "num" and not toks[k + 1].space and \
                (t.space or k == 0 or toks[k - 1].text == ","):
            v = _m_number(toks[k + 1].text)
            if v is None:
                return None
            out.append(-v if t.text == "-" else v)
            k += 2
            continue
        if t.kind == "num":
            v = _m_number(t.text)
        elif t.kind == "str" and strings:
            v = _m_string(t.text)
        elif t.kind == "name" and t.text in ("true", "false"):
            v = t.text == "true"
        else:
            return None
        if v is None:
            return None
        out.append(v)
        k += 1
        if k < len(toks) and not (toks[k].text == "," or toks[k].space):
            return None
    return out


def m_values(toks, consts):
    """(values, wrap) of an Octave/MATLAB iterable (wrap "cell": a cell array, whose each
    value the loop variable holds as a 1x1 cell), or None when it is not a literal form."""
    toks = [t for t in toks if t.kind != "nl"]
    if not toks:
        return None
    if len(toks) == 1 and toks[0].kind == "name" and toks[0].text in consts:
        vals, wrap = consts[toks[0].text]
        return list(vals), wrap
    if toks[0].text in ("[", "{") and toks[-1].text in ("]", "}"):
        inner = toks[1:-1]
        if any(t.kind == "op" and t.text in ";[]{}()" for t in inner):
            return None
        vals = _m_elements(inner, consts, toks[0].text == "{")
        if not vals:
            return None
        if toks[0].text == "[":
            return vals, None
        return vals, "cell"
    parts, cur, lvl = [], [], 0
    for t in toks:
        if t.kind == "op" and t.text in "([{":
            lvl += 1
        elif t.kind == "op" and t.text in ")]}":
            lvl -= 1
        if lvl == 0 and t.kind == "op" and t.text == ":":
            parts.append(cur)
            cur = []
            continue
        cur.append(t)
    parts.append(cur)
    if len(parts) in (2, 3):
        nums = [_m_scalar(p, consts) for p in parts]
        if not all(_whole(v) for v in nums):
            return None
        a, b = int(nums[0]), int(nums[-1])
        s = int(nums[1]) if len(nums) == 3 else 1
        if s == 0:
            return None
        return list(range(a, b + (1 if s > 0 else -1), s)), None
    v = _m_scalar(toks, consts)
    return None if v is None else ([v], None)


def m_constants(stmts, inner) -> dict:
    """Names bound to a literal form in the preamble and not touched since: {name: (values,
    wrap)}. `inner`: the statements inside blocks (if, while, function bodies) before the
    loops, whose every assignment counts as a change (of whatever value)."""
    everything = [t for st in stmts for t in st[3]] + [t for toks in inner for t in toks]
    if any(t.kind == "name" and t.text in ("eval", "evalin", "assignin") for t in everything):
        return {}
    touched = set()
    for toks in inner:
        toks = [t for t in toks if t.kind != "nl"]
        if toks and toks[0].kind == "name" and toks[0].text in _M_OPAQUE:
            return {}
        for k, t in enumerate(toks):
            nxt = toks[k + 1].text if k + 1 < len(toks) else ""
            if t.kind == "name" and nxt in ("=", "(", "{", ".", "+=", "-=", "*=", "/=", "^=",
                                            "++", "--", "]"):
                touched.add(t.text)
    consts: dict = {}
    for *_, toks in stmts:
        toks = [t for t in toks if t.kind != "nl"]
        if not toks:
            continue
        if toks[0].kind == "name" and (toks[0].text in _M_OPAQUE or (
                len(toks) == 1 or (toks[1].kind == "name" and toks[1].space))):
            consts.clear()     # `clear`, `load f`, or a bare name (a script may set anything)
            continue
        target = None
        if len(toks) >= 3 and toks[0].kind == "name" and toks[1].text == "=":
            target, value = toks[0].text, toks[2:]
        rest = value if target else toks
        for k, t in enumerate(rest):
            if t.kind != "name":
                continue
            nxt = rest[k + 1].text if k + 1 < len(rest) else ""
            if nxt in ("=", "(", "{", ".", "+=", "-=", "*=", "/=", "^=", "++", "--", "]"):
                consts.pop(t.text, None)
        if target:
            vals = m_values(value, consts)
            if vals is None:
                consts.pop(target, None)
            else:
                consts[target] = vals
    return {k: v for k, v in consts.items() if k not in touched}
