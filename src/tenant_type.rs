//! The column types a tenant id can have, and the conversion of a context value to each.
//!
//! Parsing mirrors PostgreSQL's own input functions (`int8in`, `int4in`, `int2in`, `uuid_in`)
//! for the values a context can hold (no whitespace, no control characters), so a tenant id that
//! does not fit the column is reported by tenant_guard (22023, naming the table) instead of
//! surfacing as a cast error in the middle of a query.

use pgrx::datum::{IntoDatum, Uuid};
use pgrx::pg_sys;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TenantType {
    Text,
    Varchar,
    Uuid,
    BigInt,
    Integer,
    SmallInt,
}

pub const SUPPORTED: &str = "text, varchar, uuid, bigint, integer or smallint";

impl TenantType {
    pub fn from_oid(oid: pg_sys::Oid) -> Option<TenantType> {
        Some(match oid {
            pg_sys::TEXTOID => TenantType::Text,
            pg_sys::VARCHAROID => TenantType::Varchar,
            pg_sys::UUIDOID => TenantType::Uuid,
            pg_sys::INT8OID => TenantType::BigInt,
            pg_sys::INT4OID => TenantType::Integer,
            pg_sys::INT2OID => TenantType::SmallInt,
            _ => return None,
        })
    }

    /// How SQL spells the type (`NULL::<this>` selects the type of `required_tenant_id`).
    pub fn sql_name(self) -> &'static str {
        match self {
            TenantType::Text => "text",
            TenantType::Varchar => "character varying",
            TenantType::Uuid => "uuid",
            TenantType::BigInt => "bigint",
            TenantType::Integer => "integer",
            TenantType::SmallInt => "smallint",
        }
    }

    /// The tenant id as a datum of this type, or `None` if it is not a valid value of it.
    pub fn datum(self, tenant_id: &str) -> Option<pg_sys::Datum> {
        match self {
            TenantType::Text | TenantType::Varchar => tenant_id.into_datum(),
            TenantType::Uuid => {
                parse_uuid(tenant_id).and_then(|bytes| Uuid::from_bytes(bytes).into_datum())
            }
            TenantType::BigInt => tenant_id.parse::<i64>().ok().map(pg_sys::Datum::from),
            TenantType::Integer => tenant_id.parse::<i32>().ok().map(pg_sys::Datum::from),
            TenantType::SmallInt => tenant_id.parse::<i16>().ok().map(pg_sys::Datum::from),
        }
    }
}

/// `uuid_in`'s grammar: optional braces around 32 hex digits, with an optional hyphen after any
/// group of four digits except the last.
pub fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let (inner, _) = match text.strip_prefix('{') {
        Some(rest) => (rest.strip_suffix('}')?, true),
        None => (text, false),
    };
    let mut bytes = [0u8; 16];
    let mut rest = inner.as_bytes();
    for (i, byte) in bytes.iter_mut().enumerate() {
        let [hi, lo, tail @ ..] = rest else {
            return None;
        };
        *byte = (hex(*hi)? << 4) | hex(*lo)?;
        rest = tail;
        if i % 2 == 1 && i < 15 {
            if let [b'-', tail @ ..] = rest {
                rest = tail;
            }
        }
    }
    rest.is_empty().then_some(bytes)
}

fn hex(digit: u8) -> Option<u8> {
    (digit as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod unit_tests {
    use super::parse_uuid;

    #[test]
    fn uuid_forms_that_postgres_accepts() {
        let canonical = parse_uuid("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11").unwrap();
        for form in [
            "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
            "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
            "a0eebc999c0b4ef8bb6d6bb9bd380a11",
            "a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11",
            "{a0eebc99-9c0b4ef8-bb6d6bb9-bd380a11}",
        ] {
            assert_eq!(parse_uuid(form), Some(canonical), "{form}");
        }
    }

    #[test]
    fn uuid_forms_that_postgres_rejects() {
        for form in [
            "",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a111",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11-",
            "-a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "a0eebc9-99c0b-4ef8-bb6d-6bb9bd380a11",
            "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
            "g0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "a0eebc99--9c0b-4ef8-bb6d-6bb9bd380a11",
            "acme",
        ] {
            assert_eq!(parse_uuid(form), None, "{form}");
        }
    }
}
