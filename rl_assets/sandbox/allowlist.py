"""What an agent query may contain: the function allowlist, the string-growth bound and the statement
types that must not appear anywhere in a query."""

from __future__ import annotations

from sqlglot import exp

# Names are lower case and matched against what sqlglot parsed: the function
# name for unknown ("anonymous") functions, otherwise the sqlglot class key and
# all of the class's SQL names (e.g. exp.Length answers to length, len,
# char_length).  Anything else -- read_*, glob, *_scan, query, getenv,
# current_setting, duckdb_*, pragma_*, sniff_csv, ... -- is rejected.
#
# Deliberately NOT allowed although harmless-looking, because they can build
# huge values inside a single (uninterruptible) expression evaluation, or in
# DuckDB's constant folding at plan time, where neither con.interrupt() nor
# memory_limit reaches (measured: nested replace() growing a literal reached
# 13 GB RSS and ignored the interrupt for ~50 s):
#   repeat, lpad/rpad, format/printf, range/generate_series, list_* helpers,
#   unnest, levenshtein & other quadratic fuzzy matchers, and the aggregates
#   that concentrate many rows into one value (string_agg, group_concat,
#   listagg, list, array_agg), whose output could then be amplified.
# replace()/regexp_replace() are allowed but their growth is bounded, see
# _check_string_growth.
AGGREGATE_FUNCTIONS = frozenset(
    {
        "count", "count_if", "countif", "sum", "avg", "mean", "min", "max",
        "median", "mode", "quantile", "quantile_cont", "quantile_disc",
        "percentile_cont", "percentile_disc", "stddev", "stdev", "stddev_pop",
        "stddev_samp", "variance", "variance_pop", "variance_samp", "var_pop",
        "var_samp", "first", "last", "any_value", "arg_min", "argmin", "min_by",
        "arg_max", "argmax", "max_by", "bool_and", "bool_or", "logical_and",
        "logical_or", "product", "corr", "covar_pop", "covar_samp",
        "approx_distinct", "approx_count_distinct", "fsum", "kahan_sum",
        "sumkahan",
    }
)
WINDOW_FUNCTIONS = frozenset(
    {
        "row_number", "rank", "dense_rank", "percent_rank", "cume_dist", "ntile",
        "lag", "lead", "first_value", "last_value", "nth_value",
    }
)
SCALAR_FUNCTIONS = frozenset(
    {
        # operators and syntax that sqlglot models as functions
        "and", "or", "xor", "collate", "array",
        # conditionals / casts / predicates
        "case", "if", "iif", "iff", "coalesce", "ifnull", "nvl", "nullif",
        "greatest", "least", "cast", "try_cast", "typeof", "exists",
        # arithmetic
        "abs", "round", "round_even", "roundbankers", "floor", "ceil", "ceiling",
        "trunc", "truncate", "sign", "signum", "sqrt", "cbrt", "pow", "power",
        "exp", "ln", "log", "log2", "log10", "mod", "pi", "isnan", "is_nan",
        "isinf", "is_inf", "isfinite", "even",
        # strings (none of these can grow a value beyond its inputs, except
        # concat-style functions, which grow linearly in the query length)
        "lower", "lcase", "upper", "ucase", "length", "len", "strlen",
        "char_length", "character_length", "trim", "ltrim", "rtrim",
        "substring", "substr", "left", "right", "concat", "concat_ws",
        "contains", "starts_with", "startswith", "ends_with", "endswith",
        "prefix", "suffix", "position", "strpos", "str_position", "instr",
        "split_part", "regexp_extract", "regexp_matches", "regexp_full_match",
        "regexp_like", "regexp_ilike", "regexpilike", "reverse", "translate", "strip_accents", "ascii", "chr",
        "replace", "regexp_replace", "md5", "hash",
        # dates
        "current_date", "today", "current_timestamp", "now", "date_part", "datepart", "extract", "year",
        "month", "day", "quarter", "date_trunc", "datetrunc", "timestamp_trunc",
        "strftime", "time_to_str", "strptime", "try_strptime", "str_to_time",
        "date_diff", "datediff", "make_date", "date_from_parts", "epoch",
        "time_to_unix",
    }
)
ALLOWED_FUNCTIONS = AGGREGATE_FUNCTIONS | WINDOW_FUNCTIONS | SCALAR_FUNCTIONS

# Product of the worst-case growth factors of all replace()/regexp_replace()
# calls in one query (see _check_string_growth).  Ordinary cleaning such as
# replace(x, '$', '') or regexp_replace(x, '^\((.*)\)$', '-\1') has factor 1-2.
MAX_STRING_GROWTH = 4

# Statement / clause types that must not appear anywhere in an agent query.
FORBIDDEN_NODE_TYPES = tuple(
    getattr(exp, name)
    for name in (
        "DDL", "DML", "Insert", "Update", "Delete", "Merge", "Create", "Drop",
        "Alter", "Command", "Copy", "Set", "Pragma", "Attach", "Detach", "Into",
        "Use", "Transaction", "Commit", "Rollback", "Install", "Describe",
        "Show", "Summarize", "Cache", "Uncache", "LoadData", "Refresh",
        "Analyze", "Kill",
    )
    if hasattr(exp, name)
)

