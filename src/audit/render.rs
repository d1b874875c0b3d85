//! Audit rows rendered in Rust from the trigger's transition tuples, as the invoking role.
//!
//! Why not `to_jsonb()`: for a type with a cast to `json`, `to_jsonb` calls that cast, and
//! `CREATE CAST` needs nothing but ownership of the type. The owner of an audited table could
//! give a column an enum, domain, composite or array type of their own with a cast whose
//! function does anything, and the audit statement, which writes as the extension owner (a
//! superuser), would call it. This renderer follows `to_jsonb`'s rules for the built-in types
//! (booleans, numbers, dates and timestamps in ISO form, json and jsonb nested, arrays as
//! arrays, composites as objects) and renders everything else with the type's output function;
//! it never looks for a cast.
//!
//! Output functions are safe to call: a non-superuser cannot create a base type (its I/O
//! functions must be C), and the types a non-superuser can create (enum, composite, range,
//! multirange, domain, array) print with PostgreSQL's own output functions, which call only
//! the output functions of their element types. Rendering runs before the switch to the
//! extension owner in any case (see `privilege.rs`).

use crate::jsonb::Builder;
use pgrx::pg_sys;
use std::ffi::{c_char, CStr};
use std::ptr;

/// How one value becomes jsonb, decided once per column type.
pub enum Render {
    Bool,
    Int2,
    Int4,
    Int8,
    Numeric,
    /// float4, float8: a JSON number unless NaN or infinite (then a string), as `to_jsonb`.
    Float(Box<pg_sys::FmgrInfo>),
    /// date, timestamp, timestamptz: ISO 8601, independent of DateStyle, as `to_jsonb`.
    DateTime(pg_sys::Oid),
    Json,
    Jsonb,
    /// text, varchar: the string itself.
    Text,
    Array(Box<ArrayRender>),
    Composite,
    /// Everything else: the type's output function, as a string.
    Output(Box<pg_sys::FmgrInfo>),
}

pub struct ArrayRender {
    element: Render,
    element_type: pg_sys::Oid,
    len: i16,
    byval: bool,
    align: c_char,
}

/// The output function of `type_oid`, looked up with its cache in `memory`.
unsafe fn output_function(
    type_oid: pg_sys::Oid,
    memory: pg_sys::MemoryContext,
) -> Box<pg_sys::FmgrInfo> {
    let mut function = pg_sys::InvalidOid;
    let mut varlena = false;
    pg_sys::getTypeOutputInfo(type_oid, &mut function, &mut varlena);
    let mut info = Box::new(std::mem::zeroed::<pg_sys::FmgrInfo>());
    pg_sys::fmgr_info_cxt(function, info.as_mut(), memory);
    info
}

/// Call a built-in function directly (no fmgr lookup); its result is never NULL.
unsafe fn call(
    function: unsafe fn(pg_sys::FunctionCallInfo) -> pg_sys::Datum,
    args: &[pg_sys::Datum],
) -> pg_sys::Datum {
    let args: Vec<Option<pg_sys::Datum>> = args.iter().copied().map(Some).collect();
    pgrx::direct_function_call_as_datum(function, &args).unwrap_or(pg_sys::Datum::from(0))
}

/// Bytes of a palloc'd C string, borrowed for as long as the caller keeps it allocated.
unsafe fn c_bytes<'a>(text: *const c_char) -> &'a [u8] {
    CStr::from_ptr(text).to_bytes()
}

/// The bytes of a text datum (detoasted if needed), borrowed likewise.
unsafe fn text_bytes<'a>(value: pg_sys::Datum) -> &'a [u8] {
    let text = pg_sys::pg_detoast_datum_packed(value.cast_mut_ptr());
    std::slice::from_raw_parts(
        pgrx::varlena::vardata_any(text) as *const u8,
        pgrx::varlena::varsize_any_exhdr(text),
    )
}

impl Render {
    /// The renderer of a type; lookups are cached in `memory`.
    pub unsafe fn for_type(type_oid: pg_sys::Oid, memory: pg_sys::MemoryContext) -> Render {
        let base = pg_sys::getBaseType(type_oid);
        match base {
            pg_sys::BOOLOID => Render::Bool,
            pg_sys::INT2OID => Render::Int2,
            pg_sys::INT4OID => Render::Int4,
            pg_sys::INT8OID => Render::Int8,
            pg_sys::NUMERICOID => Render::Numeric,
            pg_sys::FLOAT4OID | pg_sys::FLOAT8OID => Render::Float(output_function(base, memory)),
            pg_sys::DATEOID | pg_sys::TIMESTAMPOID | pg_sys::TIMESTAMPTZOID => {
                Render::DateTime(base)
            }
            pg_sys::JSONOID => Render::Json,
            pg_sys::JSONBOID => Render::Jsonb,
            pg_sys::TEXTOID | pg_sys::VARCHAROID => Render::Text,
            _ => {
                let element_type = pg_sys::get_element_type(base);
                if element_type != pg_sys::InvalidOid {
                    let (mut len, mut byval, mut align) = (0i16, false, 0 as c_char);
                    pg_sys::get_typlenbyvalalign(element_type, &mut len, &mut byval, &mut align);
                    Render::Array(Box::new(ArrayRender {
                        element: Render::for_type(element_type, memory),
                        element_type,
                        len,
                        byval,
                        align,
                    }))
                } else if pg_sys::type_is_rowtype(base) {
                    Render::Composite
                } else {
                    Render::Output(output_function(base, memory))
                }
            }
        }
    }

    /// Add a non-null value to `builder` (as the next value of an object, or element of an
    /// array). Strings are allocated in the current memory context, which must outlive the
    /// builder.
    pub unsafe fn push(&self, builder: &mut Builder<'_>, value: pg_sys::Datum) {
        match self {
            Render::Bool => builder.boolean(value.value() != 0),
            Render::Int2 => builder.number(pg_sys::int64_to_numeric(value.value() as i16 as i64)),
            Render::Int4 => builder.number(pg_sys::int64_to_numeric(value.value() as i32 as i64)),
            Render::Int8 => builder.number(pg_sys::int64_to_numeric(value.value() as i64)),
            Render::Numeric => {
                let numeric = pg_sys::pg_detoast_datum(value.cast_mut_ptr()) as pg_sys::Numeric;
                if pg_sys::numeric_is_nan(numeric) || pg_sys::numeric_is_inf(numeric) {
                    let text = call(pg_sys::numeric_out, &[pg_sys::Datum::from(numeric)]);
                    builder.string(c_bytes(text.cast_mut_ptr()));
                } else {
                    builder.number(numeric);
                }
            }
            Render::Float(output) => {
                let text =
                    pg_sys::OutputFunctionCall(ptr::from_ref(output.as_ref()).cast_mut(), value);
                let bytes = c_bytes(text);
                if bytes.iter().any(|b| *b == b'N' || *b == b'n') {
                    builder.string(bytes);
                } else {
                    let numeric = call(
                        pg_sys::numeric_in,
                        &[
                            pg_sys::Datum::from(text),
                            pg_sys::Datum::from(pg_sys::InvalidOid),
                            pg_sys::Datum::from(-1i32),
                        ],
                    );
                    builder.number(numeric.cast_mut_ptr());
                }
            }
            Render::DateTime(type_oid) => {
                let text =
                    pg_sys::JsonEncodeDateTime(ptr::null_mut(), value, *type_oid, ptr::null());
                builder.string(c_bytes(text));
            }
            Render::Json => {
                let text =
                    pg_sys::text_to_cstring(pg_sys::pg_detoast_datum_packed(value.cast_mut_ptr()));
                let document = call(pg_sys::jsonb_in, &[pg_sys::Datum::from(text)]);
                builder.jsonb(document.cast_mut_ptr());
            }
            Render::Jsonb => builder.jsonb(pg_sys::pg_detoast_datum(value.cast_mut_ptr()).cast()),
            Render::Text => builder.string(text_bytes(value)),
            Render::Array(array) => array.push(builder, value),
            Render::Composite => push_composite(builder, value),
            Render::Output(output) => {
                let text =
                    pg_sys::OutputFunctionCall(ptr::from_ref(output.as_ref()).cast_mut(), value);
                builder.string(c_bytes(text));
            }
        }
    }

    /// A tenant column's value as text, as its type prints it (text, varchar, uuid, integers).
    pub unsafe fn text(&self, value: pg_sys::Datum) -> String {
        match self {
            Render::Text => String::from_utf8_lossy(text_bytes(value)).into_owned(),
            Render::Int2 => (value.value() as i16).to_string(),
            Render::Int4 => (value.value() as i32).to_string(),
            Render::Int8 => (value.value() as i64).to_string(),
            Render::Output(output) | Render::Float(output) => {
                let text =
                    pg_sys::OutputFunctionCall(ptr::from_ref(output.as_ref()).cast_mut(), value);
                String::from_utf8_lossy(c_bytes(text)).into_owned()
            }
            _ => String::new(),
        }
    }
}

impl ArrayRender {
    /// An array as nested JSON arrays, one level per dimension (as `to_jsonb`).
    unsafe fn push(&self, builder: &mut Builder<'_>, value: pg_sys::Datum) {
        let array = pg_sys::pg_detoast_datum(value.cast_mut_ptr()) as *mut pg_sys::ArrayType;
        let ndim = (*array).ndim;
        let dims = (array as *const u8).add(std::mem::size_of::<pg_sys::ArrayType>()) as *const i32;
        let count = if ndim > 0 {
            pg_sys::ArrayGetNItems(ndim, dims)
        } else {
            0
        };
        if count <= 0 {
            builder.begin_array();
            builder.end_array();
            return;
        }
        let (mut values, mut nulls, mut found) = (ptr::null_mut(), ptr::null_mut(), 0);
        pg_sys::deconstruct_array(
            array,
            self.element_type,
            self.len as i32,
            self.byval,
            self.align,
            &mut values,
            &mut nulls,
            &mut found,
        );
        let dims = std::slice::from_raw_parts(dims, ndim as usize);
        let values = std::slice::from_raw_parts(values, found as usize);
        let nulls = std::slice::from_raw_parts(nulls, found as usize);
        let mut next = 0;
        self.push_dimension(builder, dims, values, nulls, &mut next);
    }

    unsafe fn push_dimension(
        &self,
        builder: &mut Builder<'_>,
        dims: &[i32],
        values: &[pg_sys::Datum],
        nulls: &[bool],
        next: &mut usize,
    ) {
        builder.begin_array();
        for _ in 0..dims[0] {
            if dims.len() > 1 {
                self.push_dimension(builder, &dims[1..], values, nulls, next);
            } else {
                if nulls[*next] {
                    builder.null();
                } else {
                    self.element.push(builder, values[*next]);
                }
                *next += 1;
            }
        }
        builder.end_array();
    }
}

/// A composite value as an object of its attributes (as `to_jsonb`). The attribute types are
/// looked up per value: composite columns are rare, and their type may change between rows.
unsafe fn push_composite(builder: &mut Builder<'_>, value: pg_sys::Datum) {
    let header = pg_sys::pg_detoast_datum(value.cast_mut_ptr()) as pg_sys::HeapTupleHeader;
    let type_id = (*header).t_choice.t_datum.datum_typeid;
    let typmod = (*header).t_choice.t_datum.datum_typmod;
    let desc = pg_sys::lookup_rowtype_tupdesc(type_id, typmod);
    let natts = (*desc).natts as usize;
    let mut tuple = pg_sys::HeapTupleData {
        t_len: pgrx::varlena::varsize(header as *const pg_sys::varlena) as u32,
        t_self: std::mem::zeroed(),
        t_tableOid: pg_sys::InvalidOid,
        t_data: header,
    };
    let mut values = vec![pg_sys::Datum::from(0); natts];
    let mut nulls = vec![false; natts];
    pg_sys::heap_deform_tuple(&mut tuple, desc, values.as_mut_ptr(), nulls.as_mut_ptr());
    let memory = pg_sys::CurrentMemoryContext;
    builder.begin_object();
    for i in 0..natts {
        let attribute = (*desc).attrs.as_ptr().add(i);
        if (*attribute).attisdropped {
            continue;
        }
        // The key must outlive the builder, the tuple descriptor need not: copy it.
        let name = pg_sys::pstrdup((*attribute).attname.data.as_ptr());
        builder.key(c_bytes(name));
        if nulls[i] {
            builder.null();
        } else {
            Render::for_type((*attribute).atttypid, memory).push(builder, values[i]);
        }
    }
    builder.end_object();
    if (*desc).tdrefcount >= 0 {
        pg_sys::DecrTupleDescRefCount(desc);
    }
}
