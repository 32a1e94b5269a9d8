//! The tests' one reader of InfluxDB line protocol: InfluxData's own parser
//! (the `influxdb-line-protocol` crate). A line it refuses is an error; what
//! it reads is handed on as plain values.

/// A field value, as typed on the wire (`1i`, `1.5`, `true`, `"text"`).
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
}

impl Field {
    pub fn kind(&self) -> &'static str {
        match self {
            Field::Int(_) => "int",
            Field::Float(_) => "float",
            Field::Bool(_) => "bool",
            Field::Str(_) => "string",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Point {
    pub measurement: String,
    /// Unescaped, in the line's order.
    pub tags: Vec<(String, String)>,
    pub fields: Vec<(String, Field)>,
    pub timestamp: Option<i64>,
}

impl Point {
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn field(&self, key: &str) -> Option<&Field> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

/// One line; an error names what the parser refused. vmnetprobe writes no
/// unsigned fields, so one is an error too.
pub fn parse(line: &str) -> Result<Point, String> {
    use influxdb_line_protocol::FieldValue;
    let mut parsed: Vec<_> = influxdb_line_protocol::parse_lines(line).collect();
    if parsed.len() != 1 {
        return Err(format!(
            "{} lines where one was expected: {line:?}",
            parsed.len()
        ));
    }
    let parsed = parsed
        .remove(0)
        .map_err(|e| format!("line protocol parser refused {line:?}: {e}"))?;
    let tags = parsed
        .series
        .tag_set
        .iter()
        .flatten()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut fields = Vec::new();
    for (k, v) in parsed.field_set.iter() {
        let field = match v {
            FieldValue::I64(i) => Field::Int(*i),
            FieldValue::U64(u) => return Err(format!("unsigned field {k}={u}u in {line:?}")),
            FieldValue::F64(x) => Field::Float(*x),
            FieldValue::Boolean(b) => Field::Bool(*b),
            FieldValue::String(s) => Field::Str(s.to_string()),
        };
        fields.push((k.to_string(), field));
    }
    Ok(Point {
        measurement: parsed.series.measurement.to_string(),
        tags,
        fields,
        timestamp: parsed.timestamp,
    })
}
