"""Symbolic sizes: one formula that evaluates in Python and prints as C.

Input: integers and the names of run-time quantities (T, B). Output: `Size` expressions with
`eval(T=..., B=...)` for Python (the runtime's workspace, `ScheduledProgram.window`) and `c()` for
the generated C (`<p>_workspace_floats`, `<p>_window_steps`), so a formula the two languages share
is written once, in schedule.py, and both sides agree by construction.

    ws = window(T, B) * B * Named("LSTM_WS_ROW_FLOATS", 80)
    ws.eval(T=10, B=2)  -> 1600;  ws.c() -> "Tw * B * LSTM_WS_ROW_FLOATS" (with window as Var "Tw")

Constants fold where both sides are known; C prints with the fewest parentheses its precedence needs.
"""

from __future__ import annotations

from dataclasses import dataclass

_PREC = {"+": 1, "-": 1, "*": 2, "/": 2}


class Size:
    """A non-negative integer expression over named run-time values."""

    prec = 9  # an atom

    def eval(self, **env: int) -> int:
        raise NotImplementedError

    def c(self) -> str:
        raise NotImplementedError

    def __add__(self, other: "Size | int") -> "Size":
        return _op("+", self, other)

    def __radd__(self, other: int) -> "Size":
        return _op("+", other, self)

    def __mul__(self, other: "Size | int") -> "Size":
        return _op("*", self, other)

    def __rmul__(self, other: int) -> "Size":
        return _op("*", other, self)

    def __floordiv__(self, other: "Size | int") -> "Size":
        return _op("/", self, other)  # C's / on non-negative integers

    def __rfloordiv__(self, other: int) -> "Size":
        return _op("/", other, self)

    def __str__(self) -> str:
        return self.c()


@dataclass(frozen=True, eq=False)
class Const(Size):
    value: int

    def eval(self, **env: int) -> int:
        return self.value

    def c(self) -> str:
        return str(self.value)


@dataclass(frozen=True, eq=False)
class Sym(Size):
    """A value known only at run time (a C parameter of the same name)."""

    name: str

    def eval(self, **env: int) -> int:
        try:
            return int(env[self.name])
        except KeyError:
            raise ValueError(f"size needs {self.name}=") from None

    def c(self) -> str:
        return self.name


@dataclass(frozen=True, eq=False)
class Named(Size):
    """A compile-time constant that the C spells by its macro name."""

    name: str
    value: int

    def eval(self, **env: int) -> int:
        return self.value

    def c(self) -> str:
        return self.name


@dataclass(frozen=True, eq=False)
class Var(Size):
    """A sub-expression the C computes once into a local of this name."""

    name: str
    expr: Size

    def eval(self, **env: int) -> int:
        return self.expr.eval(**env)

    def c(self) -> str:
        return self.name


@dataclass(frozen=True, eq=False)
class Call(Size):
    """A generated C function of (T, B) whose body is `body` (the C side prints the call)."""

    name: str
    body: Size

    def eval(self, **env: int) -> int:
        return self.body.eval(**env)

    def c(self) -> str:
        return f"{self.name}(T, B)"


@dataclass(frozen=True, eq=False)
class Wide(Size):
    """The value widened to int64_t in C (for a product of int32 parameters); no-op in Python."""

    expr: Size

    def eval(self, **env: int) -> int:
        return self.expr.eval(**env)

    def c(self) -> str:
        return f"(int64_t){_paren(self.expr, 9)}"


@dataclass(frozen=True, eq=False)
class Op(Size):
    kind: str  # + - * /
    a: Size
    b: Size

    @property
    def prec(self) -> int:  # type: ignore[override]
        return _PREC[self.kind]

    def eval(self, **env: int) -> int:
        x, y = self.a.eval(**env), self.b.eval(**env)
        return {"+": x + y, "-": x - y, "*": x * y, "/": x // y if y else 0}[self.kind]

    def c(self) -> str:
        p = self.prec
        # a right operand of equal precedence needs parentheses unless the operator associates
        right = p + (0 if self.kind in "+*" and isinstance(self.b, Op) and self.b.kind == self.kind else 1)
        return f"{_paren(self.a, p)} {self.kind} {_paren(self.b, right)}"


@dataclass(frozen=True, eq=False)
class Clamp(Size):
    """x limited to [lo, hi] (lo <= hi), printed as C's conditional."""

    x: Size
    lo: Size
    hi: Size

    prec = 0

    def eval(self, **env: int) -> int:
        x, lo, hi = self.x.eval(**env), self.lo.eval(**env), self.hi.eval(**env)
        return hi if x >= hi else max(lo, x)

    def c(self) -> str:
        x, lo, hi = _paren(self.x, 1), _paren(self.lo, 1), _paren(self.hi, 1)
        return f"{x} >= {hi} ? {hi} : ({x} < {lo} ? {lo} : {x})"


@dataclass(frozen=True, eq=False)
class Min(Size):
    a: Size
    b: Size

    prec = 0

    def eval(self, **env: int) -> int:
        return min(self.a.eval(**env), self.b.eval(**env))

    def c(self) -> str:
        a, b = _paren(self.a, 1), _paren(self.b, 1)
        return f"{a} < {b} ? {a} : {b}"


def _paren(s: Size, need: int) -> str:
    return s.c() if s.prec >= need else f"({s.c()})"


def as_size(v: Size | int) -> Size:
    if isinstance(v, Size):
        return v
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"a size must be an int or a Size, got {type(v).__name__}")
    return Const(v)


def _op(kind: str, a: Size | int, b: Size | int) -> Size:
    a, b = as_size(a), as_size(b)
    if isinstance(a, Const) and isinstance(b, Const):
        return Const(Op(kind, a, b).eval())
    if kind == "*" and (_is(a, 0) or _is(b, 0)):
        return Const(0)
    if kind == "*" and _is(b, 1) or kind == "+" and _is(b, 0) or kind == "/" and _is(b, 1):
        return a
    if kind == "*" and _is(a, 1) or kind == "+" and _is(a, 0):
        return b
    return Op(kind, a, b)


def _is(s: Size, v: int) -> bool:
    return isinstance(s, (Const, Named)) and s.value == v and isinstance(s, Const)


T = Sym("T")
B = Sym("B")
