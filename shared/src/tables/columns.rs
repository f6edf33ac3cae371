//! Assembling a record batch column by column, so that each column's name,
//! type and values are written in one place.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Float32Array, Float64Array, Int32Array, Int64Array, StringArray,
};
use arrow::datatypes::{Field, Schema};
use arrow::record_batch::RecordBatch;

use super::{Table, TableError};

/// The columns of one batch, in schema order.
pub(crate) struct Columns {
    table: Table,
    fields: Vec<Field>,
    arrays: Vec<ArrayRef>,
}

impl Columns {
    pub(crate) fn new(table: Table) -> Self {
        Self {
            table,
            fields: Vec::new(),
            arrays: Vec::new(),
        }
    }

    /// Adds a column that never contains nulls; the type is the array's.
    pub(crate) fn required(&mut self, name: &str, array: ArrayRef) -> &mut Self {
        debug_assert_eq!(array.null_count(), 0, "required column {name} holds nulls");
        self.push(name, false, array)
    }

    /// Adds a column that may hold nulls; the type is the array's.
    pub(crate) fn optional(&mut self, name: &str, array: ArrayRef) -> &mut Self {
        self.push(name, true, array)
    }

    fn push(&mut self, name: &str, nullable: bool, array: ArrayRef) -> &mut Self {
        self.fields
            .push(Field::new(name, array.data_type().clone(), nullable));
        self.arrays.push(array);
        self
    }

    pub(crate) fn finish(self) -> Result<RecordBatch, TableError> {
        let schema = Arc::new(Schema::new(self.fields));
        RecordBatch::try_new(schema, self.arrays).map_err(|source| TableError::Arrow {
            table: self.table,
            source,
        })
    }
}

pub(crate) fn utf8<'a>(values: impl Iterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(values))
}

pub(crate) fn optional_utf8<'a>(values: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(values.collect::<StringArray>())
}

pub(crate) fn int32(values: impl Iterator<Item = i32>) -> ArrayRef {
    Arc::new(Int32Array::from_iter_values(values))
}

pub(crate) fn optional_int32(values: impl Iterator<Item = Option<i32>>) -> ArrayRef {
    Arc::new(values.collect::<Int32Array>())
}

pub(crate) fn int64(values: impl Iterator<Item = i64>) -> ArrayRef {
    Arc::new(Int64Array::from_iter_values(values))
}

pub(crate) fn float32(values: impl Iterator<Item = f32>) -> ArrayRef {
    Arc::new(Float32Array::from_iter_values(values))
}

pub(crate) fn optional_float32(values: impl Iterator<Item = Option<f32>>) -> ArrayRef {
    Arc::new(values.collect::<Float32Array>())
}

pub(crate) fn float64(values: impl Iterator<Item = f64>) -> ArrayRef {
    Arc::new(Float64Array::from_iter_values(values))
}

pub(crate) fn boolean(values: impl Iterator<Item = bool>) -> ArrayRef {
    Arc::new(values.map(Some).collect::<BooleanArray>())
}

/// Returns references to `records` sorted by `key`; the sort is stable, so
/// rows with equal keys keep their input order.
pub(crate) fn sorted_by<R, K: Ord>(records: &[R], key: impl Fn(&R) -> K) -> Vec<&R> {
    let mut rows: Vec<&R> = records.iter().collect();
    rows.sort_by_key(|r| key(r));
    rows
}
