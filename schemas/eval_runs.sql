-- Eval run events: started (also on resume), finished, interrupted; with the run's settings and final metrics.
CREATE TABLE eval_runs (
    run_id VARCHAR NOT NULL,
    task VARCHAR NOT NULL,
    event VARCHAR NOT NULL,
    time TIMESTAMP NOT NULL,
    source VARCHAR,
    splits VARCHAR,
    case_limit BIGINT,
    epochs BIGINT,
    concurrency BIGINT,
    samples BIGINT,
    scorers VARCHAR,
    metrics VARCHAR,
    config VARCHAR,
    revision VARCHAR,
    experiment_id VARCHAR,
    project VARCHAR
);
