//! Functions Postgres clients call on connect or in their metadata queries that DataFusion and
//! the pg catalog crates lack or answer differently: `version()` in PostgreSQL's format,
//! `current_setting()`.

use std::sync::Arc;

use datafusion::{
    arrow::{
        array::{Array, ArrayRef, BooleanArray, StringArray},
        datatypes::DataType,
    },
    common::{Result, ScalarValue, exec_err},
    logical_expr::{
        ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
        Volatility, create_udf,
    },
};

/// What `version()` answers: clients parse the leading "PostgreSQL N.M".
pub const VERSION: &str = concat!(
    "PostgreSQL 16.6 (wiretrace ",
    env!("CARGO_PKG_VERSION"),
    ", DataFusion 55) on x86_64-pc-linux-gnu, compiled by rustc, 64-bit"
);

/// Settings `current_setting()` knows, as a PostgreSQL 16 server reports them.
const SETTINGS: [(&str, &str); 16] = [
    ("server_version", "16.6"),
    ("server_version_num", "160006"),
    ("server_encoding", "UTF8"),
    ("client_encoding", "UTF8"),
    ("datestyle", "ISO, MDY"),
    ("intervalstyle", "postgres"),
    ("timezone", "UTC"),
    ("integer_datetimes", "on"),
    ("standard_conforming_strings", "on"),
    ("search_path", "\"$user\", public"),
    ("max_identifier_length", "63"),
    ("max_index_keys", "32"),
    ("statement_timeout", "0"),
    ("transaction_isolation", "read committed"),
    ("default_transaction_read_only", "on"),
    ("is_superuser", "off"),
];

/// `version()` and `current_setting(name [, missing_ok])`.
pub(super) fn functions() -> Vec<ScalarUDF> {
    let version = create_udf(
        "version",
        vec![],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|_| Ok(ColumnarValue::Scalar(ScalarValue::from(VERSION)))),
    );
    vec![version, ScalarUDF::from(CurrentSetting::new())]
}

/// `current_setting(name [, missing_ok])`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct CurrentSetting {
    signature: Signature,
}

impl CurrentSetting {
    fn new() -> Self {
        Self {
            signature: Signature::one_of(
                vec![
                    TypeSignature::Exact(vec![DataType::Utf8]),
                    TypeSignature::Exact(vec![DataType::Utf8, DataType::Boolean]),
                ],
                Volatility::Stable,
            ),
        }
    }
}

impl ScalarUDFImpl for CurrentSetting {
    fn name(&self) -> &str {
        "current_setting"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let names = arrays[0].as_any().downcast_ref::<StringArray>();
        let missing_ok = arrays
            .get(1)
            .and_then(|a| a.as_any().downcast_ref::<BooleanArray>());
        let Some(names) = names else {
            return exec_err!("current_setting: the name must be text");
        };
        let mut out = Vec::with_capacity(rows);
        for i in 0..names.len() {
            if names.is_null(i) {
                out.push(None);
                continue;
            }
            let name = names.value(i).to_ascii_lowercase();
            match SETTINGS.iter().find(|(k, _)| *k == name) {
                Some((_, v)) => out.push(Some(*v)),
                None if missing_ok.is_some_and(|m| m.is_valid(i) && m.value(i)) => out.push(None),
                None => {
                    return exec_err!("unrecognized configuration parameter \"{name}\"");
                }
            }
        }
        let array: ArrayRef = Arc::new(StringArray::from(out));
        Ok(
            if args
                .args
                .iter()
                .all(|a| matches!(a, ColumnarValue::Scalar(_)))
            {
                ColumnarValue::Scalar(ScalarValue::try_from_array(&array, 0)?)
            } else {
                ColumnarValue::Array(array)
            },
        )
    }
}
