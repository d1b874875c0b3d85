//! Small jsonb objects built with PostgreSQL's own builder (`pushJsonbValue`), without the
//! text round trip (serialise, then `jsonb_in` parses it back) that cost set_tenant_context
//! about 2% of a transaction's backend time.

use pgrx::callconv::{BoxRet, FcInfo};
use pgrx::datum::Datum;
use pgrx::pg_sys;
use pgrx::pgrx_sql_entity_graph::metadata::{
    ArgumentError, ReturnsError, ReturnsRef, SqlMappingRef, SqlTranslatable, TypeOrigin,
};
use std::marker::PhantomData;
use std::ptr;

/// A finished `jsonb` datum, returned to SQL as is.
pub struct Jsonb(pg_sys::Datum);

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

/// Builds one flat object. The keys and values it borrows must outlive `finish` (the builder
/// keeps pointers to them until the jsonb is serialised).
pub struct ObjectBuilder<'a> {
    state: *mut pg_sys::JsonbParseState,
    borrowed: PhantomData<&'a str>,
}

impl<'a> ObjectBuilder<'a> {
    pub fn new() -> Self {
        let mut builder = ObjectBuilder {
            state: ptr::null_mut(),
            borrowed: PhantomData,
        };
        builder.push(pg_sys::JsonbIteratorToken::WJB_BEGIN_OBJECT, None);
        builder
    }

    /// `"key": "value"`, or `"key": null` for `None`.
    pub fn text(mut self, key: &'a str, value: Option<&'a str>) -> Self {
        self.push(pg_sys::JsonbIteratorToken::WJB_KEY, Some(string(key)));
        let value = match value {
            Some(value) => string(value),
            None => scalar(
                pg_sys::jbvType::jbvNull,
                pg_sys::JsonbValue__bindgen_ty_1 { boolean: false },
            ),
        };
        self.push(pg_sys::JsonbIteratorToken::WJB_VALUE, Some(value));
        self
    }

    pub fn boolean(mut self, key: &'a str, value: bool) -> Self {
        self.push(pg_sys::JsonbIteratorToken::WJB_KEY, Some(string(key)));
        let value = scalar(
            pg_sys::jbvType::jbvBool,
            pg_sys::JsonbValue__bindgen_ty_1 { boolean: value },
        );
        self.push(pg_sys::JsonbIteratorToken::WJB_VALUE, Some(value));
        self
    }

    pub fn finish(mut self) -> Jsonb {
        let object = self.push(pg_sys::JsonbIteratorToken::WJB_END_OBJECT, None);
        Jsonb(pg_sys::Datum::from(unsafe {
            pg_sys::JsonbValueToJsonb(object)
        }))
    }

    fn push(
        &mut self,
        token: pg_sys::JsonbIteratorToken::Type,
        value: Option<pg_sys::JsonbValue>,
    ) -> *mut pg_sys::JsonbValue {
        let mut value = value;
        let pointer = value.as_mut().map_or(ptr::null_mut(), |v| v as *mut _);
        // pushJsonbValue copies the JsonbValue struct (not the string bytes it points to).
        unsafe { pg_sys::pushJsonbValue(&mut self.state, token, pointer) }
    }
}

fn scalar(
    kind: pg_sys::jbvType::Type,
    val: pg_sys::JsonbValue__bindgen_ty_1,
) -> pg_sys::JsonbValue {
    pg_sys::JsonbValue { type_: kind, val }
}

fn string(text: &str) -> pg_sys::JsonbValue {
    scalar(
        pg_sys::jbvType::jbvString,
        pg_sys::JsonbValue__bindgen_ty_1 {
            string: pg_sys::JsonbValue__bindgen_ty_1__bindgen_ty_1 {
                len: text.len() as i32,
                val: text.as_ptr() as *mut std::ffi::c_char,
            },
        },
    )
}
