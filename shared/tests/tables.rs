//! The table builders and the Parquet files they become: portable column
//! types, sorted rows, study columns that cannot collide, and zstd with
//! Parquet dictionary encoding.

mod common;

use std::collections::BTreeMap;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float32Type, Int32Type, Int64Type};
use bytes::Bytes;
use common::{samples_schema, shard_fixture};
use gaze_shared::tables::{
    AttentionFieldRecord, FIXED_COLUMNS, SamplesSchema, Table, TableError, TargetKind,
    attention_fields_batch, attention_fields_schema, attention_rows_schema, attention_topk_schema,
    tokens_schema, writer_properties,
};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding};
use parquet::file::reader::{FileReader, SerializedFileReader};

fn all_schemas() -> Vec<(Table, arrow::datatypes::SchemaRef)> {
    vec![
        (Table::Samples, samples_schema().schema()),
        (Table::Tokens, tokens_schema()),
        (Table::AttentionTopk, attention_topk_schema()),
        (Table::AttentionFields, attention_fields_schema()),
        (Table::AttentionRows, attention_rows_schema()),
    ]
}

fn is_portable(data_type: &DataType) -> bool {
    match data_type {
        DataType::Utf8
        | DataType::Int32
        | DataType::Int64
        | DataType::Float32
        | DataType::Float64
        | DataType::Boolean => true,
        DataType::List(item) => item.data_type() == &DataType::Float32,
        _ => false,
    }
}

#[test]
fn every_column_has_a_portable_type() {
    for (table, schema) in all_schemas() {
        for field in schema.fields() {
            assert!(
                is_portable(field.data_type()),
                "{table}.{} has type {}",
                field.name(),
                field.data_type()
            );
        }
    }
}

#[test]
fn every_table_has_a_model_column() {
    for (table, schema) in all_schemas() {
        assert_eq!(
            schema.field_with_name("model").unwrap().data_type(),
            &DataType::Utf8,
            "{table}"
        );
    }
}

#[test]
fn shared_columns_have_one_type_everywhere() {
    let mut seen: BTreeMap<String, (Table, DataType)> = BTreeMap::new();
    for (table, schema) in all_schemas() {
        for field in schema.fields() {
            let (first, data_type) = seen
                .entry(field.name().clone())
                .or_insert((table, field.data_type().clone()));
            assert_eq!(
                data_type,
                field.data_type(),
                "{} differs between {first} and {table}",
                field.name()
            );
        }
    }
}

#[test]
fn samples_columns_follow_study_fields_and_labels() {
    let schema = samples_schema().schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        &names[..7],
        [
            "sample_id",
            "shard_id",
            "model",
            "topic",
            "route",
            "nationality",
            "age"
        ]
    );
    assert!(names.contains(&"p_GRANT"), "{names:?}");
    assert!(names.contains(&"p_REFUSE"), "{names:?}");
    assert_eq!(
        schema.field_with_name("p_GRANT").unwrap().data_type(),
        &DataType::Float32
    );
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| v.to_string()).collect()
}

#[test]
fn field_named_like_another_column_is_rejected() {
    for taken in FIXED_COLUMNS
        .into_iter()
        .chain(["field", "step", "position", "region", "target", "scores"])
    {
        let error = SamplesSchema::new(&strings(&[taken]), &[]).unwrap_err();
        assert!(
            matches!(error, TableError::InvalidColumn { .. }),
            "{taken}: {error}"
        );
    }
    let message = SamplesSchema::new(&strings(&["decision"]), &[])
        .unwrap_err()
        .to_string();
    assert_eq!(
        message,
        "column name \"decision\" of samples is invalid: the template field column would collide \
         with another column of the same name; rename the template field"
    );
}

#[test]
fn field_colliding_with_label_column_is_rejected() {
    let message = SamplesSchema::new(&strings(&["p_GRANT"]), &strings(&["GRANT"]))
        .unwrap_err()
        .to_string();
    assert!(message.contains("\"p_GRANT\""), "{message}");
    assert!(message.contains("rename the label"), "{message}");
}

#[test]
fn duplicate_or_malformed_names_are_rejected() {
    assert!(SamplesSchema::new(&strings(&["age", "age"]), &[]).is_err());
    assert!(SamplesSchema::new(&[], &strings(&["GRANT", "GRANT"])).is_err());
    for bad in ["", " age", "age ", "a.b", "a\tb"] {
        assert!(
            SamplesSchema::new(&strings(&[bad]), &[]).is_err(),
            "field {bad:?} accepted"
        );
    }
    assert!(
        SamplesSchema::new(&[], &strings(&[""])).is_err(),
        "empty label accepted"
    );
}

#[test]
fn undeclared_field_or_label_is_rejected() {
    let mut fixture = shard_fixture("llama", 0, 1);
    fixture.samples[0]
        .fields
        .insert("religion".to_string(), "none".to_string());
    let message = samples_schema()
        .batch(&fixture.samples)
        .unwrap_err()
        .to_string();
    assert_eq!(
        message,
        "sample 0 has template field \"religion\", which the study does not declare; declared fields: nationality, age"
    );

    let mut fixture = shard_fixture("llama", 0, 1);
    fixture.samples[0]
        .label_probabilities
        .insert("DEFER".to_string(), 0.1);
    let message = samples_schema()
        .batch(&fixture.samples)
        .unwrap_err()
        .to_string();
    assert!(message.contains("label \"DEFER\""), "{message}");
}

#[test]
fn seed_above_i64_is_rejected() {
    let mut fixture = shard_fixture("llama", 0, 1);
    fixture.samples[0].seed = u64::MAX;
    let message = samples_schema()
        .batch(&fixture.samples)
        .unwrap_err()
        .to_string();
    assert!(message.contains("seed 18446744073709551615"), "{message}");
}

#[test]
fn missing_field_value_is_null() {
    let mut fixture = shard_fixture("llama", 0, 1);
    fixture.samples[0].fields.remove("age");
    let batch = samples_schema().batch(&fixture.samples).unwrap();
    assert!(batch.column_by_name("age").unwrap().is_null(0));
    assert!(!batch.column_by_name("nationality").unwrap().is_null(0));
}

fn int32_column(batch: &RecordBatch, name: &str) -> Vec<i32> {
    batch
        .column_by_name(name)
        .unwrap()
        .as_primitive::<Int32Type>()
        .values()
        .to_vec()
}

#[test]
fn topk_rows_sort_by_query_and_rank() {
    let batches = shard_fixture("llama", 0, 4).batches();
    let topk = &batches[2].1[0];
    let sample = topk
        .column_by_name("sample_id")
        .unwrap()
        .as_primitive::<Int64Type>()
        .values()
        .to_vec();
    let keys: Vec<(i64, i32, i32, i32, i32)> = (0..topk.num_rows())
        .map(|i| {
            let column = |name| int32_column(topk, name)[i];
            (
                sample[i],
                column("step"),
                column("layer"),
                column("head"),
                column("rank"),
            )
        })
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    assert_eq!(keys[0], (0, 0, 0, 0, 0));
    assert_eq!(keys[1], (0, 0, 0, 0, 1));
}

#[test]
fn samples_sort_by_sample_id() {
    let batches = shard_fixture("llama", 2, 5).batches();
    let ids = batches[0].1[0]
        .column_by_name("sample_id")
        .unwrap()
        .as_primitive::<Int64Type>()
        .values()
        .to_vec();
    assert_eq!(ids, vec![2000, 2001, 2002, 2003, 2004]);
}

#[test]
fn field_rows_sort_by_target_kind_then_target() {
    let record = |target_kind, target: &str| AttentionFieldRecord {
        sample_id: 1,
        model: "m".to_string(),
        step: 0,
        layer: 0,
        head: 0,
        target_kind,
        target: target.to_string(),
        mass: 0.0,
        mass_per_token: 0.0,
        token_count: 0,
    };
    let records = [
        record(TargetKind::Generated, "generated"),
        record(TargetKind::Field, "nationality"),
        record(TargetKind::Region, "vignette"),
        record(TargetKind::Field, "age"),
        record(TargetKind::Bos, "bos"),
        record(TargetKind::Region, "system"),
    ];
    let batch = attention_fields_batch(&records).unwrap();
    let targets: Vec<&str> = batch
        .column_by_name("target")
        .unwrap()
        .as_string::<i32>()
        .iter()
        .map(Option::unwrap)
        .collect();
    assert_eq!(
        targets,
        [
            "bos",
            "system",
            "vignette",
            "age",
            "nationality",
            "generated"
        ]
    );
}

#[test]
fn field_masses_of_fixture_add_up_to_one() {
    let batches = shard_fixture("llama", 0, 1).batches();
    let fields = &batches[3].1[0];
    let kinds = fields
        .column_by_name("target_kind")
        .unwrap()
        .as_string::<i32>();
    let mass = fields
        .column_by_name("mass")
        .unwrap()
        .as_primitive::<Float32Type>();
    let partition: f32 = (0..fields.num_rows())
        .filter(|&i| ["bos", "region", "generated"].contains(&kinds.value(i)))
        .map(|i| mass.value(i))
        .sum();
    // 8 query rows (2 steps x 2 layers x 2 heads), each adding up to 1.
    assert_eq!(partition, 8.0);
}

/// Writes `batch` with the table's writer settings into memory.
fn parquet_bytes(table: Table, batch: &RecordBatch) -> Bytes {
    let mut buffer = Vec::new();
    let mut writer = ArrowWriter::try_new(
        &mut buffer,
        batch.schema(),
        Some(writer_properties(table, &batch.schema())),
    )
    .unwrap();
    writer.write(batch).unwrap();
    writer.close().unwrap();
    Bytes::from(buffer)
}

#[test]
fn parquet_uses_zstd_dictionary_strings_and_statistics() {
    let batches = shard_fixture("llama", 0, 4).batches();
    let topk = &batches[2].1[0];
    let reader = SerializedFileReader::new(parquet_bytes(Table::AttentionTopk, topk)).unwrap();
    let row_group = reader.metadata().row_group(0);

    for column in row_group.columns() {
        let name = column.column_path().string();
        assert!(
            matches!(column.compression(), Compression::ZSTD(_)),
            "{name} is not zstd"
        );
        assert!(column.statistics().is_some(), "{name} has no statistics");
        let dictionary = column
            .encodings()
            .any(|e| matches!(e, Encoding::RLE_DICTIONARY | Encoding::PLAIN_DICTIONARY));
        assert_eq!(
            dictionary,
            name != "score",
            "{name}: dictionary encoding {dictionary}"
        );
    }
}

#[test]
fn parquet_records_sort_order() {
    let batches = shard_fixture("llama", 0, 2).batches();
    let topk = &batches[2].1[0];
    let reader = SerializedFileReader::new(parquet_bytes(Table::AttentionTopk, topk)).unwrap();
    let sorting = reader
        .metadata()
        .row_group(0)
        .sorting_columns()
        .unwrap()
        .clone();
    let names: Vec<String> = sorting
        .iter()
        .map(|c| {
            reader
                .metadata()
                .file_metadata()
                .schema_descr()
                .column(c.column_idx as usize)
                .path()
                .string()
        })
        .collect();
    assert_eq!(names, ["sample_id", "step", "layer", "head", "rank"]);
}

#[test]
fn strings_stay_plain_utf8_after_reading() {
    let batches = shard_fixture("llama", 0, 2).batches();
    let tokens = &batches[1].1[0];
    let bytes = parquet_bytes(Table::Tokens, tokens);
    let reader =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap();
    assert_eq!(
        reader
            .schema()
            .field_with_name("token")
            .unwrap()
            .data_type(),
        &DataType::Utf8
    );
}
