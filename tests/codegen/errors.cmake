# Runs protoc with protoc-gen-prpc on input it must refuse, and checks that
# protoc fails with the plugin's message and that no C was written.
file(REMOVE_RECURSE ${OUT}/${CASE})
file(MAKE_DIRECTORY ${OUT}/${CASE})
set(args -I${SRC}/bad -I${SRC}/proto -I${PB_INCLUDE}
         --plugin=protoc-gen-prpc=${PLUGIN})
if(CASE STREQUAL "collide")
  set(run ${PROTOC} ${args} --prpc_out=${OUT}/${CASE} ${SRC}/bad/collide.proto)
  set(expect "methods GetItem and get_item both map to the C name 'get_item'")
elseif(CASE STREQUAL "cpackage")
  set(run ${PROTOC} ${args} --prpc_out=${OUT}/${CASE} ${SRC}/bad/cpackage.proto)
  set(expect "sets protobuf-c's c_package option ('renamed')")
elseif(CASE STREQUAL "option")
  set(run ${PROTOC} ${args} --prpc_out=backend=protobuf-d:${OUT}/${CASE}
          ${SRC}/proto/nopkg.proto)
  set(expect "unknown option 'backend=protobuf-d'")
elseif(CASE STREQUAL "garbage")
  # Not a CodeGeneratorRequest at all: the plugin answers with an error in
  # its response (field 1) and exits 0, as protoc expects.
  set(run ${CMAKE_COMMAND} -E echo "not a request")
endif()
if(CASE STREQUAL "garbage")
  execute_process(COMMAND ${CMAKE_COMMAND} -E echo_append "\xff\xff\xff"
                  COMMAND ${PLUGIN} RESULT_VARIABLE rc OUTPUT_VARIABLE out)
  if(NOT rc EQUAL 0 OR NOT out MATCHES "does not decode")
    message(FATAL_ERROR "plugin on garbage: rc=${rc} out=${out}")
  endif()
  return()
endif()
execute_process(COMMAND ${run} RESULT_VARIABLE rc ERROR_VARIABLE err
                OUTPUT_VARIABLE out)
if(rc EQUAL 0)
  message(FATAL_ERROR "protoc accepted ${CASE}: ${err}")
endif()
string(FIND "${err}" "${expect}" at)
if(at LESS 0)
  message(FATAL_ERROR "protoc's error for ${CASE} lacks '${expect}':\n${err}")
endif()
file(GLOB_RECURSE written ${OUT}/${CASE}/*)
if(written)
  message(FATAL_ERROR "files written despite the error: ${written}")
endif()
message(STATUS "refused as expected: ${err}")
