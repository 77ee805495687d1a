"""One config object from the environment, with the Step Functions definition's variable names."""

from __future__ import annotations

import pytest

from jobs.config import ConfigError, PipelineConfig
from jobs.keys import dataset_of, relative_key, stage_key


def test_reads_the_workflow_variables():
    config = PipelineConfig.from_env(
        {
            "S3_BUCKET": "shop-bucket",
            "ORDERS_KEYS": '["raw/orders/2025-07-10/a.csv","raw/orders/2025-07-10/b c.csv","raw/orders/2025-07-10/a.csv"]',
            "ORDER_ITEMS_KEYS": "raw/order_items/2025-07-10/x.csv, raw/order_items/2025-07-10/y.csv",
            "BATCH_ID": "2025-07-10",
            "RUN_ID": "2025-07-10-g2",
            "AWS_DEFAULT_REGION": "eu-west-1",
            "RECOMPUTE_DATES": '["2025-07-11", "2025-07-09"]',
        }
    )
    assert config.orders_keys == ("raw/orders/2025-07-10/a.csv", "raw/orders/2025-07-10/b c.csv")
    assert config.order_items_keys == ("raw/order_items/2025-07-10/x.csv", "raw/order_items/2025-07-10/y.csv")
    assert (config.batch_id, config.run_id, config.region) == ("2025-07-10", "2025-07-10-g2", "eu-west-1")
    assert config.products_key == "raw/products/products.csv"
    assert config.lake_path == "s3a://shop-bucket/lake"
    assert config.endpoint_url is None  # real AWS unless overridden
    assert (config.daily_kpis_table, config.category_kpis_table) == ("DailyKPIs", "CategoryKPIs")
    assert config.recompute_dates == ("2025-07-09", "2025-07-11")
    assert config.max_file_bytes == 5 * 1024**3 and config.inputs_key is None
    assert (
        PipelineConfig.from_env({"MAX_FILE_BYTES": "1024", "INPUTS_KEY": " control/x.json "}).max_file_bytes
        == 1024
    )
    assert PipelineConfig.from_env({"INPUTS_KEY": " control/x.json "}).inputs_key == "control/x.json"
    assert config.validation_threads == 2
    assert PipelineConfig.from_env({"VALIDATION_THREADS": " 3 "}).validation_threads == 3


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ORDERS_KEYS": "[not json"}, "ORDERS_KEYS is not a valid JSON array"),
        ({"ORDER_ITEMS_KEYS": "[1, 2]"}, "ORDER_ITEMS_KEYS must be a JSON array of strings"),
        ({"SPARK_SHUFFLE_PARTITIONS": "zero"}, "SPARK_SHUFFLE_PARTITIONS must be a positive integer"),
        ({"RECOMPUTE_DATES": "2025-02-30"}, "not a YYYY-MM-DD date"),
        ({"MAX_FILE_BYTES": "5GB"}, "MAX_FILE_BYTES must be a positive number of bytes"),
        ({"SHORT_JVM_MAX_BYTES": "-1"}, "SHORT_JVM_MAX_BYTES must be a number of bytes"),
        ({"VALIDATION_THREADS": "0"}, "VALIDATION_THREADS must be a positive integer, got '0'"),
        ({"LOCK_WAIT_SECONDS": "soon"}, "LOCK_WAIT_SECONDS must be a positive number of seconds"),
        ({"LOCK_TTL_SECONDS": "0"}, "LOCK_TTL_SECONDS must be a positive number of seconds"),
        ({"SPARK_UI_ENABLED": "yes please"}, "SPARK_UI_ENABLED must be true or false"),
    ],
)
def test_bad_settings_name_the_variable(env, message):
    with pytest.raises(ConfigError, match=message):
        PipelineConfig.from_env(env)


def test_the_host_side_settings_are_read_here_too(tmp_path):
    """Lock, Spark UI and log level, suites directory: one object, not reads scattered in the jobs."""
    from jobs.transformation.job import settings_of_lock
    from jobs.transformation.lock import LockSettings
    from jobs.validation.suites import expectations_dir

    default = PipelineConfig.from_env({})
    assert (default.spark_ui, default.spark_log_level, default.expectations_dir) == (False, "WARN", None)
    assert settings_of_lock(default) == LockSettings()
    assert expectations_dir(default).name == "expectations"
    config = PipelineConfig.from_env(
        {
            "LOCK_TTL_SECONDS": "30",
            "LOCK_WAIT_SECONDS": "2.5",
            "SPARK_UI_ENABLED": "True",
            "SPARK_LOG_LEVEL": "info",
            "ECOMKPI_EXPECTATIONS_DIR": str(tmp_path),
        }
    )
    assert settings_of_lock(config) == LockSettings(ttl_seconds=30.0, wait_seconds=2.5)
    assert (config.spark_ui, config.spark_log_level) == (True, "INFO")
    assert expectations_dir(config) == tmp_path


def test_bucket_is_required_by_the_jobs():
    with pytest.raises(ConfigError, match="S3_BUCKET"):
        PipelineConfig.from_env({}).require_bucket()


def test_stage_keys():
    assert relative_key("raw/orders/2025-07-10/a b.csv") == "orders/2025-07-10/a b.csv"
    assert relative_key("validated/products/products.csv") == "products/products.csv"
    assert (
        stage_key("processed", "raw/order_items/2025-07-10/x.csv") == "processed/order_items/2025-07-10/x.csv"
    )
    assert dataset_of("invalid/order_items/x.csv") == "order_items"
    with pytest.raises(ValueError, match="not under"):
        dataset_of("raw/manifests/2025-07-10.json")
