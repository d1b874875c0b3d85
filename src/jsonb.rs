//! jsonb values built with PostgreSQL's own builder (`pushJsonbValue`), without a text round
//! trip (serialise, then `jsonb_in` parses it back): the small objects the context functions
//! return, and the audit rows `audit::render` assembles value by value.

use pgrx::callconv::{BoxRet, FcInfo};
use pgrx::datum::Datum;
use pgrx::pg_sys;
use pgrx::pgrx_sql_entity_graph::metadata::{
    ArgumentError, ReturnsError, ReturnsRef, SqlMappingRef, SqlTranslatable, TypeOrigin,
};
use std::marker::PhantomData;
use std::ptr;

/// A finished `jsonb` datum, returned to SQL as is.
pub struct Jsonb(pub pg_sys::Datum);

unsafe impl BoxRet for Jsonb {
    unsafe fn box_into<'fcx>(self, fcinfo: &mut FcInfo<'fcx>) -> Datum<'fcx> {
        fcinfo.return_raw_datum(self.0)
    }
}

unsafe impl SqlTranslatable for Jsonb {
    const TYPE_IDENT: &'static str = pgrx::pgrx_resolved_type!(Jsonb);
    const TYPE_ORIGIN: TypeOrigin = TypeOrigin::External;
    const ARGUMENT_SQL: Result<SqlMappingRef, ArgumentError> = Ok(SqlMappingRef::literal("jsonb"));
    const RETURN_SQL: Result<ReturnsRef, ReturnsError> =
        Ok(ReturnsRef::One(SqlMappingRef::literal("jsonb")));
}

use pg_sys::JsonbIteratorToken as Token;

/// A jsonb document under construction. The builder keeps pointers to the bytes of keys and
/// strings (not copies) until `finish` serialises the document: what it is given must outlive
/// it, hence the lifetime.
pub struct Builder<'a> {
    state: *mut pg_sys::JsonbParseState,
    /// For each open container, whether it is an object (values follow keys) or an array.
    open: Vec<bool>,
    result: *mut pg_sys::JsonbValue,
    borrowed: PhantomData<&'a [u8]>,
}

impl<'a> Builder<'a> {
    pub fn new() -> Self {
        Builder {
            state: ptr::null_mut(),
            open: Vec::with_capacity(4),
            result: ptr::null_mut(),
            borrowed: PhantomData,
        }
    }

    pub fn begin_object(&mut self) {
        self.push(Token::WJB_BEGIN_OBJECT, None);
        self.open.push(true);
    }

    pub fn end_object(&mut self) {
        self.open.pop();
        self.push(Token::WJB_END_OBJECT, None);
    }

    pub fn begin_array(&mut self) {
        self.push(Token::WJB_BEGIN_ARRAY, None);
        self.open.push(false);
    }

    pub fn end_array(&mut self) {
        self.open.pop();
        self.push(Token::WJB_END_ARRAY, None);
    }

    /// The key of the next value of the innermost object.
    pub fn key(&mut self, key: &'a [u8]) {
        self.push(Token::WJB_KEY, Some(string_value(key)));
    }

    pub fn string(&mut self, bytes: &'a [u8]) {
        self.scalar(string_value(bytes));
    }

    pub fn null(&mut self) {
        self.scalar(scalar_value(
            pg_sys::jbvType::jbvNull,
            pg_sys::JsonbValue__bindgen_ty_1 { boolean: false },
        ));
    }

    pub fn boolean(&mut self, value: bool) {
        self.scalar(scalar_value(
            pg_sys::jbvType::jbvBool,
            pg_sys::JsonbValue__bindgen_ty_1 { boolean: value },
        ));
    }

    /// A JSON number. `numeric` must be a finite, detoasted `Numeric` that outlives the builder.
    pub unsafe fn number(&mut self, numeric: pg_sys::Numeric) {
        self.scalar(scalar_value(
            pg_sys::jbvType::jbvNumeric,
            pg_sys::JsonbValue__bindgen_ty_1 { numeric },
        ));
    }

    /// The contents of a detoasted jsonb document as the next value, token by token (as
    /// `to_jsonb` does; a scalar document becomes that scalar).
    pub unsafe fn jsonb(&mut self, document: *mut pg_sys::Jsonb) {
        let root = ptr::addr_of_mut!((*document).root);
        let mut value = std::mem::zeroed::<pg_sys::JsonbValue>();
        if (*root).header & pg_sys::JB_FSCALAR != 0 {
            pg_sys::JsonbExtractScalar(root, &mut value);
            self.scalar(value);
            return;
        }
        let mut iterator = pg_sys::JsonbIteratorInit(root);
        loop {
            let token = pg_sys::JsonbIteratorNext(&mut iterator, &mut value, false);
            match token {
                Token::WJB_DONE => break,
                Token::WJB_KEY | Token::WJB_VALUE | Token::WJB_ELEM => {
                    self.push(token, Some(value))
                }
                _ => self.push(token, None),
            }
        }
    }

    /// Serialise the finished document (in the current memory context).
    pub fn finish(self) -> pg_sys::Datum {
        debug_assert!(self.open.is_empty() && !self.result.is_null());
        pg_sys::Datum::from(unsafe { pg_sys::JsonbValueToJsonb(self.result) })
    }

    fn scalar(&mut self, value: pg_sys::JsonbValue) {
        let token = match self.open.last() {
            Some(true) => Token::WJB_VALUE,
            _ => Token::WJB_ELEM,
        };
        self.push(token, Some(value));
    }

    fn push(&mut self, token: Token::Type, value: Option<pg_sys::JsonbValue>) {
        let mut value = value;
        let pointer = value.as_mut().map_or(ptr::null_mut(), |v| v as *mut _);
        // pushJsonbValue copies the JsonbValue struct (not the bytes it points to).
        self.result = unsafe { pg_sys::pushJsonbValue(&mut self.state, token, pointer) };
    }
}

/// A flat object of text and boolean members, for the context functions' results.
pub struct ObjectBuilder<'a>(Builder<'a>);

impl<'a> ObjectBuilder<'a> {
    pub fn new() -> Self {
        let mut builder = Builder::new();
        builder.begin_object();
        ObjectBuilder(builder)
    }

    /// `"key": "value"`, or `"key": null` for `None`.
    pub fn text(mut self, key: &'a str, value: Option<&'a str>) -> Self {
        self.0.key(key.as_bytes());
        match value {
            Some(value) => self.0.string(value.as_bytes()),
            None => self.0.null(),
        }
        self
    }

    pub fn boolean(mut self, key: &'a str, value: bool) -> Self {
        self.0.key(key.as_bytes());
        self.0.boolean(value);
        self
    }

    pub fn finish(mut self) -> Jsonb {
        self.0.end_object();
        Jsonb(self.0.finish())
    }
}

fn scalar_value(
    kind: pg_sys::jbvType::Type,
    val: pg_sys::JsonbValue__bindgen_ty_1,
) -> pg_sys::JsonbValue {
    pg_sys::JsonbValue { type_: kind, val }
}

fn string_value(bytes: &[u8]) -> pg_sys::JsonbValue {
    scalar_value(
        pg_sys::jbvType::jbvString,
        pg_sys::JsonbValue__bindgen_ty_1 {
            string: pg_sys::JsonbValue__bindgen_ty_1__bindgen_ty_1 {
                len: bytes.len() as i32,
                val: bytes.as_ptr() as *mut std::ffi::c_char,
            },
        },
    )
}
