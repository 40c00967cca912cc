#!/bin/sh
# A protoc plugin that saves the CodeGeneratorRequest protoc sends it to
# $PRPC_DUMP_TO and answers with an empty CodeGeneratorResponse (no bytes).
# make_seeds.py uses it to record real requests as codegen seeds.
exec cat > "$PRPC_DUMP_TO"
