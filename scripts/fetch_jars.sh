#!/usr/bin/env bash
# Resolve the JVM jars Spark needs beyond pyspark's own (Delta Lake, hadoop-aws, AWS SDK v2 bundle)
# from Maven Central into a cache OUTSIDE the clone, so every clone (and CI's fresh one) reuses it
# and Spark starts from local files without touching the network.
#
# Usage: scripts/fetch_jars.sh [DEST [POM]]
#   DEST default: $ECOMKPI_JARS_DIR or ~/.cache/ecomkpi/jars
#   POM  default: scripts/spark-jars.pom.xml (the jars of the pinned Spark 4.1); `make compat` passes
#        scripts/spark40-jars.pom.xml and ~/.cache/ecomkpi/jars-spark4.0 (the Spark 4.0 set EMR runs)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
pom="${2:-$here/spark-jars.pom.xml}"
dest="${1:-${ECOMKPI_JARS_DIR:-$HOME/.cache/ecomkpi/jars}}"
stamp="$dest/.pom.sha256"
want="$(sha256sum "$pom" | cut -d' ' -f1)"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "spark jars: up to date in $dest"
  exit 0
fi
command -v mvn >/dev/null || { echo "fetch_jars: Maven (mvn) is required to resolve the Spark jars" >&2; exit 1; }

# pyspark already ships Scala, Hadoop client, Jackson, Parquet, logging and compression codecs;
# taking Delta's older copies of them would put two versions of one class on the classpath.
provided="scala-library,hadoop-client-api,hadoop-client-runtime,jackson-annotations,jackson-core,\
jackson-databind,jackson-datatype-jdk8,log4j-api,log4j-core,log4j-slf4j2-impl,slf4j-api,parquet-column,\
parquet-common,parquet-encoding,parquet-format-structures,parquet-hadoop,parquet-jackson,snappy-java,\
zstd-jni,RoaringBitmap,shims,aircompressor,commons-logging,jsr305,javax.annotation-api"

tmp="$dest.tmp.$$"
rm -rf "$tmp"; mkdir -p "$tmp"
echo "spark jars: resolving from Maven Central into $dest (first time only; the AWS SDK bundle is ~640 MB)"
mvn -q -B -f "$pom" dependency:copy-dependencies \
  -DincludeScope=runtime -DexcludeArtifactIds="$provided" -DoutputDirectory="$tmp"
echo "$want" > "$tmp/.pom.sha256"
rm -rf "$dest"; mkdir -p "$(dirname "$dest")"; mv "$tmp" "$dest"
ls "$dest" | sed 's/^/  /'
