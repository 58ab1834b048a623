"""The `where` language: a small, safe expression over parameter names, e.g. "n > 100 or lr < 0.1".

The text is parsed with ast and every node checked against a whitelist before it is compiled, so
a spec file cannot run arbitrary code; names that are not parameters are refused up front.
"""
from __future__ import annotations

import ast
import warnings

from pushbutton.spec.checks import err, unknown


_FUNCS = {"abs": abs, "min": min, "max": max, "round": round, "len": len,
          "int": int, "float": float, "str": str, "bool": bool}
_NODES = (ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.BinOp, ast.Add, ast.Sub, ast.Mult,
          ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.UnaryOp, ast.Not, ast.USub, ast.UAdd,
          ast.Compare, ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn,
          ast.Is, ast.IsNot, ast.Name, ast.Load, ast.Constant, ast.Tuple, ast.List, ast.Set,
          ast.Call)
_WHERE_FIX = ("use parameter names, constants, comparisons, and/or/not, arithmetic, `in`, "
              "and abs/min/max/round/len/int/float/str/bool, e.g. \"delta <= 0.5 or n > 100\"")


def _pow(a, b):   # 9**9**9 would hang the driver: refuse absurd exponents
    if isinstance(b, (int, float)) and abs(b) > 10_000:
        raise ValueError(f"exponent {b} is too large")
    return a ** b


class _PowToCall(ast.NodeTransformer):
    def visit_BinOp(self, node):
        self.generic_visit(node)
        if isinstance(node.op, ast.Pow):
            return ast.copy_location(ast.Call(ast.Name("_pow", ast.Load()), [node.left, node.right],
                                              []), node)
        return node


class _Expr:
    """A compiled where-expression; names outside the space are refused before anything runs."""

    def __init__(self, text, names, key, file, what="parameter"):
        self.text, self.key, self.file = text, key, file
        try:
            with warnings.catch_warnings():   # e.g. "n is 1": no SyntaxWarning on the console
                warnings.simplefilter("ignore")
                tree = ast.parse(text.strip(), mode="eval")
        except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
            raise err(f"where expression {text!r} is not valid Python syntax "
                      f"({getattr(e, 'msg', e)})", key, file, _WHERE_FIX) from None
        used = set()
        for node in ast.walk(tree):
            if not isinstance(node, _NODES):
                raise err(f"{type(node).__name__} is not allowed in a where expression "
                          f"({text!r})", key, file, _WHERE_FIX)
            if isinstance(node, ast.Call):
                if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCS \
                        or node.keywords:
                    raise err(f"only calls to {', '.join(_FUNCS)} (no keywords) are allowed in a "
                              f"where expression ({text!r})", key, file, _WHERE_FIX)
            elif isinstance(node, ast.Constant) and not (
                    node.value is None or isinstance(node.value, (bool, int, float, str))):
                raise err(f"constant {node.value!r} is not allowed in a where expression",
                          key, file, _WHERE_FIX)
            elif isinstance(node, ast.Name) and node.id not in _FUNCS:
                if node.id not in names:
                    raise unknown(what, node.id, list(names), key, file,
                                  f"the {'space' if what == 'parameter' else 'table'}'s "
                                  f"{what}s are: {', '.join(map(str, names))}")
                used.add(node.id)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.code = compile(ast.fix_missing_locations(_PowToCall().visit(tree)),
                                    "<where>", "eval")
        except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
            raise err(f"where expression {text!r} cannot be compiled ({e})", key, file,
                      _WHERE_FIX) from None
        self.used = used
        # a point of a concatenation may lack a name: it reads as None there
        self.globals = {"__builtins__": {}, **_FUNCS, "_pow": _pow, **dict.fromkeys(used)}

    def __call__(self, point):
        return bool(self.value(point))

    def value(self, point):
        """The expression's value on one point (a dict of names)."""
        try:
            return eval(self.code, self.globals, point)  # noqa: S307 - AST checked above
        except Exception as e:
            raise err(f"where expression {self.text!r} failed on point {point}: "
                      f"{type(e).__name__}: {e}", self.key, self.file,
                      "make the expression valid for every point (e.g. compare numbers with "
                      "numbers)") from None
