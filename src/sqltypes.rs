//! SQL argument types that pgrx does not map: `regclass`, `regrole` (and arrays) and `name`.
//!
//! `regclass`/`regrole` arrive as bare OIDs so that a dangling OID becomes our own clear error
//! (42P01 / 22023) rather than a failed `relation_open`.

use pgrx::callconv::{Arg, ArgAbi, BoxRet, FcInfo};
use pgrx::datum::{Datum, FromDatum, IntoDatum, UnboxDatum};
use pgrx::nullable::Nullable;
use pgrx::pg_sys;
use pgrx::pgrx_sql_entity_graph::metadata::{
    ArgumentError, ReturnsError, ReturnsRef, SqlMappingRef, SqlTranslatable, TypeOrigin,
};
use std::ffi::CStr;

/// Function arguments decode through `FromDatum`; SQL NULL is `None`.
macro_rules! arg_abi_via_from_datum {
    ($name:ident) => {
        unsafe impl<'fcx> ArgAbi<'fcx> for $name {
            unsafe fn unbox_arg_unchecked(arg: Arg<'_, 'fcx>) -> Self {
                let index = arg.index();
                arg.unbox_arg_using_from_datum()
                    .unwrap_or_else(|| panic!("argument {index} must not be null"))
            }
            unsafe fn unbox_nullable_arg(arg: Arg<'_, 'fcx>) -> Nullable<Self> {
                arg.unbox_arg_using_from_datum().into()
            }
        }
    };
}

/// The SQL spelling of an argument and return type.
macro_rules! sql_type {
    ($name:ident, $sql:literal) => {
        unsafe impl SqlTranslatable for $name {
            const TYPE_IDENT: &'static str = pgrx::pgrx_resolved_type!($name);
            const TYPE_ORIGIN: TypeOrigin = TypeOrigin::External;
            const ARGUMENT_SQL: Result<SqlMappingRef, ArgumentError> =
                Ok(SqlMappingRef::literal($sql));
            const RETURN_SQL: Result<ReturnsRef, ReturnsError> =
                Ok(ReturnsRef::One(SqlMappingRef::literal($sql)));
        }
    };
}

macro_rules! oid_newtype {
    ($name:ident, $type_oid:expr, $sql:literal) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub struct $name(pub pg_sys::Oid);

        impl FromDatum for $name {
            unsafe fn from_polymorphic_datum(
                datum: pg_sys::Datum,
                is_null: bool,
                typoid: pg_sys::Oid,
            ) -> Option<Self> {
                pg_sys::Oid::from_polymorphic_datum(datum, is_null, typoid).map($name)
            }
        }

        impl IntoDatum for $name {
            fn into_datum(self) -> Option<pg_sys::Datum> {
                Some(pg_sys::Datum::from(self.0))
            }
            fn type_oid() -> pg_sys::Oid {
                $type_oid
            }
        }

        unsafe impl UnboxDatum for $name {
            type As<'src> = $name;
            unsafe fn unbox<'src>(datum: Datum<'src>) -> Self::As<'src>
            where
                Self: 'src,
            {
                $name(pg_sys::Oid::unbox(datum))
            }
        }

        unsafe impl BoxRet for $name {
            unsafe fn box_into<'fcx>(self, fcinfo: &mut FcInfo<'fcx>) -> Datum<'fcx> {
                fcinfo.return_raw_datum(pg_sys::Datum::from(self.0))
            }
        }

        arg_abi_via_from_datum!($name);
        sql_type!($name, $sql);
    };
}

oid_newtype!(RegClass, pg_sys::REGCLASSOID, "regclass");
oid_newtype!(RegRole, pg_sys::REGROLEOID, "regrole");

/// A PostgreSQL `name` (fixed-size `NameData`, not a varlena), decoded to a Rust `String`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Name(pub String);

impl FromDatum for Name {
    unsafe fn from_polymorphic_datum(
        datum: pg_sys::Datum,
        is_null: bool,
        _typoid: pg_sys::Oid,
    ) -> Option<Self> {
        if is_null || datum.is_null() {
            return None;
        }
        let name = datum.cast_mut_ptr::<pg_sys::NameData>();
        let text = CStr::from_ptr((*name).data.as_ptr());
        Some(Name(text.to_string_lossy().into_owned()))
    }
}

unsafe impl UnboxDatum for Name {
    type As<'src> = Name;
    unsafe fn unbox<'src>(datum: Datum<'src>) -> Self::As<'src>
    where
        Self: 'src,
    {
        Name::from_datum(datum.sans_lifetime(), false).unwrap_or(Name(String::new()))
    }
}

arg_abi_via_from_datum!(Name);
sql_type!(Name, "name");
