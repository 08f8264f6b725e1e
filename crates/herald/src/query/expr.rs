//! Typed columns and what is built from them: conditions ([`Expr`]), orders ([`Order`]) and
//! assignments ([`Assign`]). Values are converted with [`Field::to_value`] when the condition is
//! built, and bound when it runs.

use std::fmt;
use std::marker::PhantomData;

use crate::value::{Field, Value};

/// A column of model `M` whose Rust type is `T`: `#[derive(Model)]` writes one per field as an
/// associated constant named after the field upper-cased (`Book::PRICE_CENTS` is a
/// `Col<Book, i64>`), so that a misspelt column is a compile error and a value of the wrong type
/// does not convert.
///
/// Its methods build conditions (`Book::PRICE_CENTS.lt(1000)`), orders (`Book::TITLE.asc()`) and
/// assignments (`Book::PRICE_CENTS.set(1200)`). A value is anything that converts into `T` with
/// `Into` (so an `Option<T>` column takes a `T` too), bound as a parameter when the query runs.
pub struct Col<M, T> {
    index: usize,
    name: &'static str,
    _types: PhantomData<fn() -> (M, T)>,
}

impl<M, T> Clone for Col<M, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<M, T> Copy for Col<M, T> {}

impl<M, T> fmt::Debug for Col<M, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Col")
            .field("index", &self.index)
            .field("name", &self.name)
            .finish()
    }
}

impl<M, T> Col<M, T> {
    /// The column at `index` of the model's [`COLUMNS`](crate::Model::COLUMNS), named `name`.
    /// Written by `#[derive(Model)]`; a `Col` made by hand that does not match the model's columns
    /// makes queries that fail or read another column.
    #[doc(hidden)]
    pub const fn new(index: usize, name: &'static str) -> Self {
        Self {
            index,
            name,
            _types: PhantomData,
        }
    }

    /// Its index in the model's [`COLUMNS`](crate::Model::COLUMNS) (and in
    /// [`Model::value`](crate::Model::value)).
    pub const fn index(self) -> usize {
        self.index
    }

    /// The column's name in the table (which `#[model(column = "..")]` may make differ from the
    /// field's).
    pub const fn name(self) -> &'static str {
        self.name
    }

    /// Ascending order on this column (for [`Query::order_by`](crate::query::Query::order_by)).
    /// A nullable column sorts its NULLs first, on every database.
    pub const fn asc(self) -> Order<M> {
        Order::new(self.index, false)
    }

    /// Descending order on this column. A nullable column sorts its NULLs last, on every database.
    pub const fn desc(self) -> Order<M> {
        Order::new(self.index, true)
    }
}

impl<M, T: Field> Col<M, T> {
    fn compare(self, op: CmpOp, value: impl Into<T>) -> Expr<M> {
        Expr::new(Node::Cmp {
            column: self.index,
            op,
            value: value.into().to_value(),
        })
    }

    /// `column = value`. A NULL value (`None`) makes it `column IS NULL`.
    pub fn eq(self, value: impl Into<T>) -> Expr<M> {
        self.compare(CmpOp::Eq, value)
    }

    /// `column <> value`. A NULL value (`None`) makes it `column IS NOT NULL`; as in SQL, a row
    /// whose column is NULL matches no comparison with a value, this one included.
    pub fn ne(self, value: impl Into<T>) -> Expr<M> {
        self.compare(CmpOp::Ne, value)
    }

    /// `column < value` (a NULL on either side matches nothing).
    pub fn lt(self, value: impl Into<T>) -> Expr<M> {
        self.compare(CmpOp::Lt, value)
    }

    /// `column <= value`.
    pub fn le(self, value: impl Into<T>) -> Expr<M> {
        self.compare(CmpOp::Le, value)
    }

    /// `column > value`.
    pub fn gt(self, value: impl Into<T>) -> Expr<M> {
        self.compare(CmpOp::Gt, value)
    }

    /// `column >= value`.
    pub fn ge(self, value: impl Into<T>) -> Expr<M> {
        self.compare(CmpOp::Ge, value)
    }

    /// `column IN (v1, v2, ..)`, every value bound. An empty list matches no row (it is written
    /// as a condition that is false, which both databases accept).
    pub fn in_<V: Into<T>>(self, values: impl IntoIterator<Item = V>) -> Expr<M> {
        Expr::new(Node::In {
            column: self.index,
            values: values.into_iter().map(|v| v.into().to_value()).collect(),
        })
    }

    /// An assignment `column = value`, for [`Store::update_where`](crate::Store::update_where).
    pub fn set(self, value: impl Into<T>) -> Assign<M> {
        Assign {
            column: self.index,
            value: value.into().to_value(),
            _model: PhantomData,
        }
    }
}

impl<M, T: Field> Col<M, Option<T>> {
    /// `column IS NULL`.
    pub fn is_null(self) -> Expr<M> {
        Expr::new(Node::Null {
            column: self.index,
            null: true,
        })
    }

    /// `column IS NOT NULL`.
    pub fn is_not_null(self) -> Expr<M> {
        Expr::new(Node::Null {
            column: self.index,
            null: false,
        })
    }
}

/// The text column types, which [`Col::like`] is for.
pub trait TextField: Field + sealed::Sealed {}
impl TextField for String {}
impl TextField for Option<String> {}

mod sealed {
    pub trait Sealed {}
    impl Sealed for String {}
    impl Sealed for Option<String> {}
}

impl<M, T: TextField> Col<M, T> {
    /// `column LIKE pattern`, the pattern bound as a parameter: `%` (any run of characters) and
    /// `_` (one character) in it are the caller's wildcards, taken as written, and there is no
    /// escape character. Case: SQLite's LIKE ignores ASCII case, PostgreSQL's does not.
    pub fn like(self, pattern: impl Into<String>) -> Expr<M> {
        Expr::new(Node::Like {
            column: self.index,
            pattern: pattern.into(),
        })
    }
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    pub(crate) fn sql(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "<>",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
}

/// A condition, untyped: columns by index.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Node {
    Cmp {
        column: usize,
        op: CmpOp,
        value: Value,
    },
    In {
        column: usize,
        values: Vec<Value>,
    },
    Like {
        column: usize,
        pattern: String,
    },
    Null {
        column: usize,
        null: bool,
    },
    And(Vec<Node>),
    Or(Vec<Node>),
    Not(Box<Node>),
}

/// A condition on rows of model `M`, built from its columns (`Book::PRICE_CENTS.lt(1000)`) and
/// combined with [`and`](Self::and), [`or`](Self::or) and [`not`](Self::not) (or `!`). Every value
/// in it is bound as a parameter.
pub struct Expr<M> {
    pub(crate) node: Node,
    _model: PhantomData<fn() -> M>,
}

impl<M> Clone for Expr<M> {
    fn clone(&self) -> Self {
        Self::new(self.node.clone())
    }
}

impl<M> fmt::Debug for Expr<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.node.fmt(f)
    }
}

impl<M> Expr<M> {
    pub(crate) fn new(node: Node) -> Self {
        Self {
            node,
            _model: PhantomData,
        }
    }

    /// Both this and `other`.
    #[must_use]
    pub fn and(self, other: Expr<M>) -> Expr<M> {
        Expr::new(match self.node {
            Node::And(mut all) => {
                all.push(other.node);
                Node::And(all)
            }
            node => Node::And(vec![node, other.node]),
        })
    }

    /// This or `other` (or both).
    #[must_use]
    pub fn or(self, other: Expr<M>) -> Expr<M> {
        Expr::new(match self.node {
            Node::Or(mut any) => {
                any.push(other.node);
                Node::Or(any)
            }
            node => Node::Or(vec![node, other.node]),
        })
    }

    /// Not this (SQL's `NOT`: a row for which the condition is unknown, through a NULL, matches
    /// neither it nor its negation).
    // `std::ops::Not` is implemented too (`!expr`); this method lets `.not()` be called without
    // importing the trait.
    #[allow(clippy::should_implement_trait)]
    #[must_use]
    pub fn not(self) -> Expr<M> {
        Expr::new(Node::Not(Box::new(self.node)))
    }
}

impl<M> std::ops::Not for Expr<M> {
    type Output = Expr<M>;

    fn not(self) -> Expr<M> {
        Expr::not(self)
    }
}

/// An order on one column of `M`: [`Col::asc`] or [`Col::desc`].
pub struct Order<M> {
    pub(crate) column: usize,
    pub(crate) desc: bool,
    _model: PhantomData<fn() -> M>,
}

impl<M> Order<M> {
    pub(crate) const fn new(column: usize, desc: bool) -> Self {
        Self {
            column,
            desc,
            _model: PhantomData,
        }
    }
}

impl<M> Clone for Order<M> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<M> Copy for Order<M> {}

impl<M> fmt::Debug for Order<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Order")
            .field("column", &self.column)
            .field("desc", &self.desc)
            .finish()
    }
}

/// `column = value` in an [`update_where`](crate::Store::update_where): [`Col::set`].
pub struct Assign<M> {
    pub(crate) column: usize,
    pub(crate) value: Value,
    _model: PhantomData<fn() -> M>,
}

impl<M> Clone for Assign<M> {
    fn clone(&self) -> Self {
        Self {
            column: self.column,
            value: self.value.clone(),
            _model: PhantomData,
        }
    }
}

impl<M> fmt::Debug for Assign<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Assign")
            .field("column", &self.column)
            .field("value", &self.value)
            .finish()
    }
}
