"""The static path of reading a `pb parrun` Python script's grid: the loops' iterables evaluated
from the syntax tree alone, without running anything, when they are literal enough.

What is read: constants (numbers, strings, None, booleans), lists/tuples/dicts of those, names
the preamble binds to such a value (and does not change afterwards), the outer loops'
variables, `+ - * / // % **` on numbers (and `+ *` on lists), and calls of the builtins
`range len enumerate zip list tuple reversed` (while the script does not rebind them, nor has a
`from ... import *`). Anything else raises NotStatic: the evaluated path (parrun_probe.py) then
runs the script's top and its loop headers instead.
"""
from __future__ import annotations

import ast
import operator

from pushbutton.spec.loopnest import check_plain

LIMIT = 1_000_000          # values a loop may take
CALLS = frozenset({"range", "len", "enumerate", "zip", "list", "tuple", "reversed"})
# builtins that do not change their arguments (print(X) leaves X static)
_PURE = CALLS | {"print", "sum", "min", "max", "sorted", "str", "repr", "int", "float", "bool",
                 "isinstance", "type", "abs", "round", "format", "any", "all", "set", "dict"}
_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
           ast.Pow: operator.pow}


class NotStatic(Exception):
    """This iterable needs the script to run."""


class SetLoop(Exception):
    """The loop iterates over a set, whose order is not fixed."""


def _num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _seq(v):
    return isinstance(v, (list, tuple, range, str, dict))


def evaluate(node, env, calls: bool):
    """The value of expression `node`, or NotStatic."""
    if isinstance(node, ast.Constant):
        if isinstance(node.value, (int, float, str, bool, type(None))):
            return node.value
        raise NotStatic
    if isinstance(node, (ast.List, ast.Tuple)):
        elts = node.elts
        if all(type(e) is ast.Constant for e in elts):   # the common case, fast
            vals = [e.value for e in elts]
            if all(isinstance(v, (int, float, str, bool, type(None))) for v in vals):
                return vals if isinstance(node, ast.List) else tuple(vals)
        if any(isinstance(e, ast.Starred) for e in node.elts):
            raise NotStatic
        vals = [evaluate(e, env, calls) for e in node.elts]
        return vals if isinstance(node, ast.List) else tuple(vals)
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise NotStatic
        return {evaluate(k, env, calls): evaluate(v, env, calls)
                for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.Set):
        raise SetLoop
    if isinstance(node, ast.Name):
        if node.id in env:
            return env[node.id]
        raise NotStatic
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = evaluate(node.operand, env, calls)
        if not _num(v):
            raise NotStatic
        return -v if isinstance(node.op, ast.USub) else +v
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        a, b = evaluate(node.left, env, calls), evaluate(node.right, env, calls)
        if _num(a) and _num(b):
            if isinstance(node.op, ast.Pow) and abs(b) > 64:
                raise NotStatic
            try:
                return _BINOPS[type(node.op)](a, b)
            except (ArithmeticError, ValueError):
                raise NotStatic from None   # the script would raise: let it say so
        if isinstance(node.op, ast.Add) and type(a) is type(b) and isinstance(a, (list, tuple)):
            return a + b
        if isinstance(node.op, ast.Mult) and isinstance(a, (list, tuple)) and type(b) is int \
                and len(a) * b <= LIMIT:
            return a * b
        raise NotStatic
    if isinstance(node, ast.Call) and calls and isinstance(node.func, ast.Name) and \
            node.func.id in CALLS:
        return _call(node, env, calls)
    raise NotStatic


def _call(node, env, calls):
    fn = node.func.id
    if any(isinstance(a, ast.Starred) for a in node.args):
        raise NotStatic
    args = [evaluate(a, env, calls) for a in node.args]
    kw = {k.arg: evaluate(k.value, env, calls) for k in node.keywords}
    if fn == "range":
        if kw or not 1 <= len(args) <= 3 or not all(type(a) is int for a in args) or \
                (len(args) == 3 and args[2] == 0):
            raise NotStatic
        return range(*args)
    if len(args) + len(kw) == 0 and fn in ("list", "tuple"):
        return [] if fn == "list" else ()
    if fn == "enumerate":
        if len(args) == 1 and set(kw) <= {"start"}:
            start = kw.get("start", 0)
        elif len(args) == 2 and not kw:
            start = args[1]
        else:
            raise NotStatic
        if type(start) is not int or not _seq(args[0]):
            raise NotStatic
        return [(start + i, v) for i, v in enumerate(_items(args[0]))]
    if kw:
        raise NotStatic
    if fn == "zip":
        if not all(_seq(a) for a in args):
            raise NotStatic
        return list(zip(*(_items(a) for a in args)))
    if len(args) != 1 or not _seq(args[0]):
        raise NotStatic
    if fn == "len":
        return len(args[0])
    if fn == "reversed":
        if isinstance(args[0], dict):
            raise NotStatic
        return list(reversed(_items(args[0])))
    items = _items(args[0])
    return list(items) if fn == "list" else tuple(items)


def _items(v):
    if isinstance(v, range):
        if len(v) > LIMIT:
            raise NotStatic
        return list(v)
    if isinstance(v, dict):
        return list(v)
    return v


def iterate(node, env, calls):
    """The elements a `for` over `node` walks (a list, or a range kept lazy)."""
    v = evaluate(node, env, calls)
    if isinstance(v, range):
        return v
    if isinstance(v, (set, frozenset)):
        raise SetLoop
    if not _seq(v):
        raise NotStatic
    v = _items(v)
    if isinstance(v, str):
        v = list(v)
    if len(v) > LIMIT or not all(check_plain(x) for x in v):
        raise NotStatic   # not JSON-able (a complex number, NaN): by repr, evaluated
    return list(v)


def _bound_in(stmts) -> set:
    """Every name a statement list binds or changes (also X.append(...), X[0] = ...)."""
    out = set()
    for st in stmts:
        for n in ast.walk(st):
            if isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del)):
                out.add(n.id)
            elif isinstance(n, (ast.Attribute, ast.Subscript)) and isinstance(n.value, ast.Name):
                out.add(n.value.id)
            elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                out.add(n.name)
            elif isinstance(n, ast.alias):
                out.add((n.asname or n.name).split(".")[0])
            elif isinstance(n, (ast.Global, ast.Nonlocal)):
                out.update(n.names)
            elif isinstance(n, ast.Call) and not (isinstance(n.func, ast.Name)
                                                  and n.func.id in _PURE):
                # a function called with X may change X in place
                out.update(a.id for a in n.args if isinstance(a, ast.Name))
    return out


def star_import(stmts) -> bool:
    """Whether a `from m import *` is among the statements (imports are statements: only the
    bodies of compound statements are searched, not the expressions)."""
    for st in stmts:
        if isinstance(st, ast.ImportFrom) and any(a.name == "*" for a in st.names):
            return True
        for block in ("body", "orelse", "finalbody", "handlers", "cases"):
            inner = getattr(st, block, None)
            if isinstance(inner, list) and inner and isinstance(inner[0], ast.AST) and \
                    star_import(inner):
                return True
    return False


def constants(stmts) -> tuple[dict, bool]:
    """(names the statements bind to a static value and do not change afterwards, whether the
    builtins above may be called: no statement rebinds them, no `import *`)."""
    consts: dict = {}
    rebound: set = set()
    for st in stmts:
        if star_import([st]):
            consts.clear()
            rebound.update(CALLS)
            continue
        calls = not (rebound & CALLS)
        if isinstance(st, (ast.Assign, ast.AnnAssign)) and st.value is not None:
            targets = st.targets if isinstance(st, ast.Assign) else [st.target]
            if all(isinstance(t, ast.Name) for t in targets):
                try:
                    val = evaluate(st.value, consts, calls)
                except (NotStatic, SetLoop):
                    val = NotStatic
                for t in targets:
                    if val is NotStatic:
                        consts.pop(t.id, None)
                    else:
                        consts[t.id] = val
                rebound.update(t.id for t in targets)
                if val is NotStatic:
                    # names the value's evaluation may change (a walrus, a call's argument)
                    for name in _bound_in([ast.Expr(st.value)]) - {t.id for t in targets}:
                        consts.pop(name, None)
                        rebound.add(name)
                continue
        touched = _bound_in([st])
        rebound |= touched
        for name in touched:
            consts.pop(name, None)
    return consts, not (rebound & CALLS)
