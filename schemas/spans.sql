-- One row per finished span (OpenTelemetry), from tracekit's decorators, any OTel instrumentation, OTLP or sandboxed runs.
CREATE TABLE spans (
    trace_id VARCHAR NOT NULL,
    span_id VARCHAR NOT NULL,
    parent_span_id VARCHAR,
    name VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    span_kind VARCHAR,
    start_time TIMESTAMP NOT NULL,
    end_time TIMESTAMP NOT NULL,
    duration_ms DOUBLE NOT NULL,
    status VARCHAR NOT NULL,
    status_message VARCHAR,
    service_name VARCHAR,
    project VARCHAR,
    experiment_id VARCHAR,
    input VARCHAR,
    output VARCHAR,
    attributes VARCHAR,
    events STRUCT(time TIMESTAMP, name VARCHAR, attributes VARCHAR)[],
    links STRUCT(trace_id VARCHAR, span_id VARCHAR, attributes VARCHAR)[],
    resource VARCHAR,
    scope VARCHAR
);
