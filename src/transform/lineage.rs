//! Which of a transform's output columns carry personal data.
//!
//! Masks go by column name (`x-pii` properties of the schema). A transform that copies a
//! personal field into a column of another name (`json_get_str(x_submitter, 'phone') AS
//! phone`) would therefore be served unmasked. This follows each output column back through
//! the transform's plan to the `input` columns whose *value* can reach it: a comparison, a
//! test or any other true/false expression carries none (`phone IS NOT NULL` says nothing of
//! the number), nor does a count, a mask function or the condition of a `CASE`; anything the
//! walk does not know is taken to carry everything it reads.

use std::collections::BTreeSet;

use datafusion::common::{DFSchema, ExprSchema};
use datafusion::logical_expr::expr::{
    AggregateFunction, Alias, Case, Cast, ScalarFunction, TryCast,
};
use datafusion::logical_expr::{ExprSchemable, LogicalPlan};
use datafusion::prelude::Expr;

use arrow::datatypes::DataType;

/// Per output column of a plan, the personal `input` columns whose value may reach it.
type Lineage = Vec<BTreeSet<String>>;

/// The output columns of `plan` that carry personal data (`personal`: the schema's `x-pii`
/// property names) under a name that is not itself personal, each with what it carries.
pub fn unmasked_personal_outputs(
    plan: &LogicalPlan,
    personal: &[String],
) -> Vec<(String, Vec<String>)> {
    let lineage = lineage(plan, personal);
    plan.schema()
        .fields()
        .iter()
        .zip(lineage)
        .filter(|(field, carried)| !carried.is_empty() && !personal.contains(field.name()))
        .map(|(field, carried)| (field.name().clone(), carried.into_iter().collect()))
        .collect()
}

fn lineage(plan: &LogicalPlan, personal: &[String]) -> Lineage {
    let width = plan.schema().fields().len();
    let inputs = plan.inputs();
    match plan {
        LogicalPlan::TableScan(scan) => scan
            .projected_schema
            .fields()
            .iter()
            .map(|f| {
                personal
                    .iter()
                    .filter(|p| *p == f.name())
                    .cloned()
                    .collect()
            })
            .collect(),
        LogicalPlan::Projection(projection) => {
            let from = lineage(&projection.input, personal);
            let schema = projection.input.schema();
            projection
                .expr
                .iter()
                .map(|e| carried_by(e, schema, &from, personal))
                .collect()
        }
        LogicalPlan::Aggregate(aggregate) => {
            let from = lineage(&aggregate.input, personal);
            let schema = aggregate.input.schema();
            let mut out: Lineage = aggregate
                .group_expr
                .iter()
                .chain(&aggregate.aggr_expr)
                .map(|e| carried_by(e, schema, &from, personal))
                .collect();
            // Grouping sets add an id column; whatever else is there, assume the worst.
            out.resize_with(width, || everything(&from));
            out
        }
        LogicalPlan::Window(window) => {
            let from = lineage(&window.input, personal);
            let schema = window.input.schema();
            let mut out = from.clone();
            out.extend(
                window
                    .window_expr
                    .iter()
                    .map(|e| carried_by(e, schema, &from, personal)),
            );
            out
        }
        LogicalPlan::Join(join) => {
            let mut out = lineage(&join.left, personal);
            out.extend(lineage(&join.right, personal));
            if out.len() == width {
                out
            } else {
                // Semi and anti joins keep one side: assume both sides' worst.
                vec![everything(&out); width]
            }
        }
        LogicalPlan::Union(union) => {
            let mut out: Lineage = vec![BTreeSet::new(); width];
            for input in &union.inputs {
                for (slot, carried) in out.iter_mut().zip(lineage(input, personal)) {
                    slot.extend(carried);
                }
            }
            out
        }
        _ => match inputs.as_slice() {
            [] => vec![BTreeSet::new(); width],
            // Filters, sorts, limits, aliases, distinct: the same columns as their input.
            [input] if input.schema().fields().len() == width => lineage(input, personal),
            // Anything else (unnest, ...): a column named as an input column carries what
            // it did, any other column everything.
            [input] => {
                let from = lineage(input, personal);
                let worst = everything(&from);
                plan.schema()
                    .fields()
                    .iter()
                    .map(|f| {
                        input
                            .schema()
                            .fields()
                            .iter()
                            .position(|g| g.name() == f.name())
                            .map_or_else(|| worst.clone(), |i| from[i].clone())
                    })
                    .collect()
            }
            many => {
                let all: Lineage = many.iter().flat_map(|p| lineage(p, personal)).collect();
                vec![everything(&all); width]
            }
        },
    }
}

fn everything(lineage: &Lineage) -> BTreeSet<String> {
    lineage.iter().flatten().cloned().collect()
}

/// What the value of `expr` (over `schema`, whose columns carry `from`) may carry.
fn carried_by(
    expr: &Expr,
    schema: &DFSchema,
    from: &Lineage,
    personal: &[String],
) -> BTreeSet<String> {
    // A true/false answer computed from other data is not that data (`phone IS NOT NULL`).
    // One computed from yes/no columns may be them (`NOT active`), so it is followed.
    let reads_yes_no = expr.column_refs().iter().any(|c| {
        schema
            .field_from_column(c)
            .is_ok_and(|f| f.data_type() == &DataType::Boolean)
    });
    if !reads_yes_no && matches!(expr.get_type(schema), Ok(DataType::Boolean)) {
        return BTreeSet::new();
    }
    let of_all = |exprs: &[&Expr]| -> BTreeSet<String> {
        exprs
            .iter()
            .flat_map(|e| carried_by(e, schema, from, personal))
            .collect()
    };
    match expr {
        Expr::Literal(..) => BTreeSet::new(),
        Expr::Column(column) => schema
            .index_of_column(column)
            .ok()
            .and_then(|i| from.get(i).cloned())
            .unwrap_or_else(|| everything(from)),
        Expr::Alias(Alias { expr, .. })
        | Expr::Cast(Cast { expr, .. })
        | Expr::TryCast(TryCast { expr, .. })
        | Expr::Negative(expr) => carried_by(expr, schema, from, personal),
        // A subquery's answer is whatever its own first column carries.
        Expr::ScalarSubquery(subquery) => lineage(&subquery.subquery, personal)
            .into_iter()
            .next()
            .unwrap_or_default(),
        // The value is one of the branches; the conditions choose, they are not shown.
        Expr::Case(Case {
            when_then_expr,
            else_expr,
            ..
        }) => {
            let mut branches: Vec<&Expr> = when_then_expr
                .iter()
                .map(|(_, then)| then.as_ref())
                .collect();
            branches.extend(else_expr.as_deref());
            of_all(&branches)
        }
        Expr::ScalarFunction(ScalarFunction { func, args }) => {
            if func.name().starts_with("mask_") {
                BTreeSet::new()
            } else {
                of_all(&args.iter().collect::<Vec<_>>())
            }
        }
        Expr::AggregateFunction(AggregateFunction { func, params }) => {
            if func.name().eq_ignore_ascii_case("count") {
                BTreeSet::new()
            } else {
                of_all(&params.args.iter().collect::<Vec<_>>())
            }
        }
        Expr::BinaryExpr(binary) => of_all(&[binary.left.as_ref(), binary.right.as_ref()]),
        // Anything else may carry every column it reads.
        other => other
            .column_refs()
            .into_iter()
            .flat_map(|c| {
                schema
                    .index_of_column(c)
                    .ok()
                    .and_then(|i| from.get(i).cloned())
                    .unwrap_or_else(|| everything(from))
            })
            .collect(),
    }
}
