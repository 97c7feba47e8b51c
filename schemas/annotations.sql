-- Human (or tool) labels on a trace, a span, an experiment or an eval case: review decisions, scores, notes.
CREATE TABLE annotations (
    annotation_id VARCHAR NOT NULL,
    target_kind VARCHAR NOT NULL,
    target_id VARCHAR NOT NULL,
    trace_id VARCHAR,
    experiment_id VARCHAR,
    label VARCHAR,
    score DOUBLE,
    note VARCHAR,
    author VARCHAR NOT NULL,
    source VARCHAR,
    time TIMESTAMP NOT NULL,
    project VARCHAR
);
