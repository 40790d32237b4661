//! `trace`, `traces`, `trace_by` and `trace_grafana` as DataFusion table functions: the call
//! evaluates its arguments; its plan node reads and assembles the spans when executed.

use std::{fmt, sync::Arc};

use arrow::{
    array::{
        Array, ArrayRef, AsArray, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
        TimestampMicrosecondArray,
    },
    datatypes::{DataType, Field, Schema, SchemaRef},
};
use async_trait::async_trait;
use datafusion::{
    catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider},
    common::{DFSchema, ScalarValue, internal_err, plan_err, tree_node::TreeNodeRecursion},
    datasource::TableType,
    error::{DataFusionError, Result},
    execution::{
        SendableRecordBatchStream, TaskContext,
        memory_pool::{MemoryConsumer, MemoryPool},
    },
    logical_expr::Expr,
    physical_expr::{EquivalenceProperties, PhysicalExpr},
    physical_plan::{
        DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
        execution_plan::{Boundedness, EmissionType},
        stream::RecordBatchStreamAdapter,
    },
};
use wiretrace_storage::schema::l7_flow_log_schema;

use super::{
    assemble::Tolerance,
    index::KeyIndex,
    lookup::{self, FROM_META, Seed, Traced},
};

/// Default time searched either side of a trace's seed spans, seconds.
pub const DEFAULT_WINDOW_S: i64 = 60;

/// Which table function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    /// `trace(_id [, window_s])`.
    Trace,
    /// `traces(start, end)`.
    Traces,
    /// `trace_by(key, value [, window_s])`.
    TraceBy,
    /// `trace_grafana(_id [, window_s])`.
    TraceGrafana,
}

impl Function {
    /// Every function with its SQL name.
    pub const ALL: [(&'static str, Function); 4] = [
        ("trace", Self::Trace),
        ("traces", Self::Traces),
        ("trace_by", Self::TraceBy),
        ("trace_grafana", Self::TraceGrafana),
    ];

    fn usage(self) -> &'static str {
        match self {
            Self::Trace => "trace(_id [, window_seconds])",
            Self::Traces => "traces(start_time, end_time)",
            Self::TraceBy => "trace_by('x_request_id' | 'trace_id', value [, window_seconds])",
            Self::TraceGrafana => "trace_grafana(_id [, window_seconds])",
        }
    }
}

/// One of the trace table functions, as registered in a session.
#[derive(Debug, Clone)]
pub struct TraceFunction {
    function: Function,
    tolerance: Tolerance,
    index: Arc<KeyIndex>,
}

impl TraceFunction {
    /// The function `function` with the default tolerances, its lookups served by `index`.
    pub fn new(function: Function, index: Arc<KeyIndex>) -> Self {
        Self {
            function,
            tolerance: Tolerance::default(),
            index,
        }
    }
}

/// What a call asked for, its arguments evaluated.
#[derive(Debug, Clone)]
enum Request {
    Lookup { seed: Seed, window_us: i64 },
    Window { from_us: i64, to_us: i64 },
}

/// Evaluates a constant argument (`now() - interval '5 minutes'`, a string, a number).
fn constant(session: &dyn Session, expr: &Expr) -> Result<ScalarValue> {
    let schema = DFSchema::empty();
    let simplified = session.create_physical_expr(expr.clone(), &schema)?;
    let batch = RecordBatch::try_new_with_options(
        Arc::new(Schema::empty()),
        vec![],
        &arrow::array::RecordBatchOptions::new().with_row_count(Some(1)),
    )?;
    match simplified.evaluate(&batch)? {
        datafusion::logical_expr::ColumnarValue::Scalar(s) => Ok(s),
        datafusion::logical_expr::ColumnarValue::Array(a) => ScalarValue::try_from_array(&a, 0),
    }
}

fn int_arg(v: &ScalarValue, what: &str, usage: &str) -> Result<i64> {
    match v.cast_to(&DataType::Int64) {
        Ok(ScalarValue::Int64(Some(i))) => Ok(i),
        _ => plan_err!("{what} must be an integer, as in {usage}"),
    }
}

fn time_arg(v: &ScalarValue, what: &str, usage: &str) -> Result<i64> {
    let ts = DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, Some("UTC".into()));
    match v.cast_to(&ts) {
        Ok(ScalarValue::TimestampMicrosecond(Some(us), _)) => Ok(us),
        _ => plan_err!("{what} must be a timestamp, as in {usage}"),
    }
}

impl TableFunctionImpl for TraceFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let usage = self.function.usage();
        let values = args
            .exprs()
            .iter()
            .map(|e| constant(args.session(), e))
            .collect::<Result<Vec<_>>>()?;
        let window = |i: usize| -> Result<i64> {
            let s = values
                .get(i)
                .map(|v| int_arg(v, "window_seconds", usage))
                .transpose()?
                .unwrap_or(DEFAULT_WINDOW_S);
            if !(0..=86_400).contains(&s) {
                return plan_err!("window_seconds must be within 0..=86400, got {s}");
            }
            Ok(s * 1_000_000)
        };
        let arity = |lo: usize, hi: usize| -> Result<()> {
            if (lo..=hi).contains(&values.len()) {
                Ok(())
            } else {
                plan_err!("{usage}: got {} arguments", values.len())
            }
        };
        let request = match self.function {
            Function::Trace | Function::TraceGrafana => {
                arity(1, 2)?;
                Request::Lookup {
                    seed: Seed::Id(int_arg(&values[0], "_id", usage)?),
                    window_us: window(1)?,
                }
            }
            Function::TraceBy => {
                arity(2, 3)?;
                let text = |v: &ScalarValue| match v.cast_to(&DataType::Utf8) {
                    Ok(ScalarValue::Utf8(Some(s))) => Ok(s),
                    _ => plan_err!("{usage}: key and value must be text"),
                };
                let value = text(&values[1])?;
                let seed = match text(&values[0])?.as_str() {
                    "x_request_id" => Seed::XRequestId(value),
                    "trace_id" => Seed::TraceId(value),
                    other => return plan_err!("{usage}: unknown key '{other}'"),
                };
                Request::Lookup {
                    seed,
                    window_us: window(2)?,
                }
            }
            Function::Traces => {
                arity(2, 2)?;
                let from_us = time_arg(&values[0], "start_time", usage)?;
                let to_us = time_arg(&values[1], "end_time", usage)?;
                if to_us < from_us {
                    return plan_err!("{usage}: end_time is before start_time");
                }
                Request::Window { from_us, to_us }
            }
        };
        Ok(Arc::new(TraceTable {
            function: self.function,
            tolerance: self.tolerance,
            index: Arc::clone(&self.index),
            request,
            schema: output_schema(self.function),
        }))
    }
}

/// Columns assembly adds to `l7_flow_log`'s.
pub const TRACE_COLUMNS: [(&str, DataType, bool, &str); 4] = [
    (
        "trace_uid",
        DataType::Int64,
        false,
        "_id of the trace's first root span",
    ),
    (
        "parent_id",
        DataType::Int64,
        true,
        "_id of the parent span (NULL for a root)",
    ),
    ("depth", DataType::Int32, false, "Distance from the root"),
    (
        "span_order",
        DataType::Int32,
        false,
        "Position in the trace, depth first by start time",
    ),
];

/// Columns of `trace_grafana` (Grafana's Traces panel, table format).
const GRAFANA_COLUMNS: [(&str, DataType, bool); 8] = [
    ("traceID", DataType::Utf8, false),
    ("spanID", DataType::Utf8, false),
    ("parentSpanID", DataType::Utf8, true),
    ("operationName", DataType::Utf8, false),
    ("serviceName", DataType::Utf8, false),
    ("startTime", DataType::Float64, false),
    ("duration", DataType::Float64, false),
    ("tags", DataType::Utf8, false),
];

fn output_schema(function: Function) -> SchemaRef {
    if function == Function::TraceGrafana {
        return Arc::new(Schema::new(
            GRAFANA_COLUMNS
                .iter()
                .map(|(n, t, null)| Field::new(*n, t.clone(), *null))
                .collect::<Vec<_>>(),
        ));
    }
    let mut fields: Vec<Field> = l7_flow_log_schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.extend(TRACE_COLUMNS.iter().map(|(n, t, null, doc)| {
        Field::new(*n, t.clone(), *null).with_metadata(
            [(
                wiretrace_storage::schema::DOC_KEY.to_string(),
                doc.to_string(),
            )]
            .into(),
        )
    }));
    Arc::new(Schema::new(fields))
}

/// The result of one call, computed when scanned.
#[derive(Clone)]
struct TraceTable {
    function: Function,
    tolerance: Tolerance,
    index: Arc<KeyIndex>,
    request: Request,
    schema: SchemaRef,
}

impl fmt::Debug for TraceTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TraceTable")
            .field("function", &self.function)
            .field("request", &self.request)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl TableProvider for TraceTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let wanted: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.schema.fields().len()).collect(),
        };
        let mut columns: Vec<String> = Vec::new();
        let l7 = l7_flow_log_schema();
        let extra: &[&str] = if self.function == Function::TraceGrafana {
            &[
                "request_type",
                "request_resource",
                "response_code",
                "process_kname_0",
                "process_kname_1",
                "host",
                "capture_nic",
                "ip_0",
                "ip_1",
                "signal_source",
                "observation_point",
            ]
        } else {
            &[]
        };
        for name in wanted
            .iter()
            .map(|&i| self.schema.field(i).name().as_str())
            .chain(extra.iter().copied())
        {
            if l7.index_of(name).is_ok()
                && !FROM_META.contains(&name)
                && !columns.iter().any(|c| c == name)
            {
                columns.push(name.to_string());
            }
        }
        let schema = Arc::new(self.schema.project(&wanted)?);
        Ok(Arc::new(TraceExec::new(
            Call {
                function: self.function,
                request: self.request.clone(),
                tolerance: self.tolerance,
                index: Arc::clone(&self.index),
                columns,
                wanted,
            },
            schema,
        )))
    }
}

/// A call as its plan node runs it: the request and what to read for the output.
#[derive(Debug)]
struct Call {
    function: Function,
    request: Request,
    tolerance: Tolerance,
    index: Arc<KeyIndex>,
    /// Stored columns to read for the output.
    columns: Vec<String>,
    /// Output columns asked for (indexes into the function's output schema).
    wanted: Vec<usize>,
}

impl Call {
    /// Reads and assembles the spans, drawing `traces()`'s window from `pool`.
    async fn run(&self, schema: &SchemaRef, pool: &Arc<dyn MemoryPool>) -> Result<RecordBatch> {
        let traced = match &self.request {
            Request::Window { from_us, to_us } => {
                let memory = MemoryConsumer::new("traces()").register(pool);
                lookup::traces(
                    &self.index,
                    *from_us,
                    *to_us,
                    &self.tolerance,
                    &self.columns,
                    memory,
                )
                .await?
            }
            Request::Lookup { seed, window_us } => {
                lookup::expand(
                    &self.index,
                    seed.clone(),
                    *window_us,
                    &self.tolerance,
                    &self.columns,
                )
                .await?
            }
        };
        if self.function == Function::TraceGrafana {
            Ok(grafana(&traced)?.project(&self.wanted)?)
        } else {
            with_tree_columns(schema, &traced)
        }
    }
}

/// The plan node of a trace function: the spans are read and assembled when it is executed
/// (not while the query is planned, so `EXPLAIN` costs nothing and the work is cancelled with
/// the query), in one partition of one batch.
#[derive(Debug)]
struct TraceExec {
    call: Arc<Call>,
    properties: Arc<PlanProperties>,
}

impl TraceExec {
    fn new(call: Call, schema: SchemaRef) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        Self {
            call: Arc::new(call),
            properties: Arc::new(properties),
        }
    }
}

impl DisplayAs for TraceExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let name = Function::ALL
            .iter()
            .find(|(_, g)| *g == self.call.function)
            .map_or("trace", |(n, _)| n);
        match &self.call.request {
            Request::Window { from_us, to_us } => {
                write!(f, "TraceExec: {name}, window_us=[{from_us}, {to_us}]")
            }
            Request::Lookup { seed, window_us } => {
                write!(f, "TraceExec: {name}, seed={seed:?}, window_us={window_us}")
            }
        }
    }
}

impl ExecutionPlan for TraceExec {
    fn name(&self) -> &'static str {
        "TraceExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return internal_err!("TraceExec has one partition, not {partition}");
        }
        let (call, schema) = (Arc::clone(&self.call), self.schema());
        let pool = Arc::clone(context.memory_pool());
        let out = Arc::clone(&schema);
        let batch = futures::stream::once(async move { call.run(&out, &pool).await });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, batch)))
    }
}

/// The traced rows with the tree columns, as `schema` (a projection of the output) asks.
fn with_tree_columns(schema: &SchemaRef, t: &Traced) -> Result<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .map(|f| -> Result<ArrayRef> {
            Ok(match f.name().as_str() {
                "trace_uid" => Arc::new(Int64Array::from(t.trace_uid.clone())),
                "parent_id" => Arc::new(Int64Array::from(t.parent_id.clone())),
                "_id" => Arc::new(Int64Array::from(t.id.clone())),
                "start_time" | "end_time" => {
                    let us = if f.name() == "start_time" {
                        &t.start
                    } else {
                        &t.end
                    };
                    Arc::new(TimestampMicrosecondArray::from(us.clone()).with_timezone("UTC"))
                }
                "depth" => Arc::new(Int32Array::from_iter_values(
                    t.depth.iter().map(|&d| d as i32),
                )),
                "span_order" => Arc::new(Int32Array::from_iter_values(
                    t.order.iter().map(|&o| o as i32),
                )),
                name => Arc::clone(t.rows.column_by_name(name).ok_or_else(|| {
                    DataFusionError::Internal(format!("column {name} was not read"))
                })?),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new_with_options(
        Arc::clone(schema),
        columns,
        &arrow::array::RecordBatchOptions::new().with_row_count(Some(t.id.len())),
    )?)
}

/// The traced rows as Grafana's Traces panel wants them.
fn grafana(t: &Traced) -> Result<RecordBatch> {
    let rows = &t.rows;
    let text = |name: &str| -> Result<&StringArray> {
        rows.column_by_name(name)
            .and_then(|c| c.as_string_opt::<i32>())
            .ok_or_else(|| DataFusionError::Internal(format!("column {name} was not read")))
    };
    let (method, resource, point, source) = (
        text("request_type")?,
        text("request_resource")?,
        text("observation_point")?,
        text("signal_source")?,
    );
    let (kname0, kname1, host, nic) = (
        text("process_kname_0")?,
        text("process_kname_1")?,
        text("host")?,
        text("capture_nic")?,
    );
    let (ip0, ip1) = (text("ip_0")?, text("ip_1")?);
    let code = rows
        .column_by_name("response_code")
        .and_then(|c| c.as_primitive_opt::<arrow::datatypes::Int32Type>());
    let opt = |a: &StringArray, i: usize| (a.is_valid(i)).then(|| a.value(i).to_string());
    let hex = |v: i64| format!("{v:016x}");
    let mut cols: [Vec<Option<String>>; 6] = Default::default();
    let (mut start, mut duration) = (Vec::new(), Vec::new());
    for (i, &id) in t.id.iter().enumerate() {
        cols[0].push(Some(hex(t.trace_uid[i])));
        cols[1].push(Some(hex(id)));
        cols[2].push(t.parent_id[i].map(hex));
        cols[3].push(Some(
            [opt(method, i), opt(resource, i)]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" "),
        ));
        let service = match point.value(i) {
            "c-p" => opt(kname0, i),
            "s-p" => opt(kname1, i),
            _ => opt(nic, i).map(|n| format!("{}/{n}", host.value(i))),
        };
        cols[4].push(Some(service.unwrap_or_else(|| host.value(i).to_string())));
        let mut tags = vec![
            ("observation_point", point.value(i).to_string()),
            ("signal_source", source.value(i).to_string()),
            ("client", ip0.value(i).to_string()),
            ("server", ip1.value(i).to_string()),
            ("_id", id.to_string()),
        ];
        if let Some(c) = code.filter(|c| c.is_valid(i)) {
            tags.push(("http.status_code", c.value(i).to_string()));
        }
        let tags: Vec<serde_json::Value> = tags
            .into_iter()
            .map(|(k, v)| serde_json::json!({"key": k, "value": v}))
            .collect();
        cols[5].push(Some(serde_json::Value::Array(tags).to_string()));
        start.push(t.start[i] as f64 / 1000.0);
        duration.push((t.end[i] - t.start[i]) as f64 / 1000.0);
    }
    let [trace, span, parent, op, service, tags] =
        cols.map(|c| Arc::new(StringArray::from(c)) as ArrayRef);
    Ok(RecordBatch::try_new(
        output_schema(Function::TraceGrafana),
        vec![
            trace,
            span,
            parent,
            op,
            service,
            Arc::new(Float64Array::from(start)),
            Arc::new(Float64Array::from(duration)),
            tags,
        ],
    )?)
}
