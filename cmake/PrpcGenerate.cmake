# prpc_generate(<target> PROTOS <file.proto>... [IMPORT_DIRS <dir>...]
#               [BACKEND protobuf-c|nanopb] [OUT_DIR <dir>])
#
# Runs protoc with protoc-c and protoc-gen-prpc on each .proto file and
# builds the generated <name>.pb-c.c and <name>.prpc.c into a static library
# <target> that links piperpc. Link your program to <target> and include
# "<name>.prpc.h". Each .proto is named relative to the first IMPORT_DIRS
# entry that holds it (default: its own directory), as protoc requires.
#
# BACKEND nanopb uses nanopb's protoc-gen-nanopb instead of protoc-c: it
# builds <name>.pb.c and <name>.prpc.c and links piperpc_nanopb (the codec)
# and nanopb's runtime (Debian: nanopb, libnanopb-dev). nanopb's <name>.options
# files are read from the .proto's directory and the IMPORT_DIRS.
include_guard(GLOBAL)

find_program(PRPC_PROTOC protoc REQUIRED)
find_program(PRPC_PROTOC_GEN_C protoc-gen-c REQUIRED)

function(prpc_generate target)
  cmake_parse_arguments(PARSE_ARGV 1 arg "" "BACKEND;OUT_DIR"
                        "PROTOS;IMPORT_DIRS")
  if(NOT arg_PROTOS)
    message(FATAL_ERROR "prpc_generate(${target}): no PROTOS given")
  endif()
  if(NOT arg_BACKEND)
    set(arg_BACKEND protobuf-c)
  endif()
  if(arg_BACKEND STREQUAL "nanopb")
    find_program(PRPC_PROTOC_GEN_NANOPB protoc-gen-nanopb)
    if(NOT TARGET nanopb::protobuf-nanopb-static)
      find_package(nanopb CONFIG QUIET)
    endif()
    if(NOT PRPC_PROTOC_GEN_NANOPB OR NOT TARGET nanopb::protobuf-nanopb-static)
      message(FATAL_ERROR "prpc_generate(${target}): BACKEND nanopb needs "
                          "protoc-gen-nanopb and nanopb's CMake package "
                          "(Debian: apt-get install nanopb libnanopb-dev)")
    endif()
    if(TARGET piperpc_nanopb)
      set(codec_lib piperpc_nanopb)
    elseif(TARGET piperpc::piperpc_nanopb)
      set(codec_lib piperpc::piperpc_nanopb)
    else()
      message(FATAL_ERROR "prpc_generate(${target}): this piperpc was built "
                          "without the nanopb backend")
    endif()
  elseif(NOT arg_BACKEND STREQUAL "protobuf-c")
    message(FATAL_ERROR "prpc_generate(${target}): unknown BACKEND "
                        "'${arg_BACKEND}' (supported: protobuf-c, nanopb)")
  endif()
  if(NOT arg_OUT_DIR)
    set(arg_OUT_DIR ${CMAKE_CURRENT_BINARY_DIR}/${target}_gen)
  endif()

  set(srcs)
  set(incs)
  foreach(proto IN LISTS arg_PROTOS)
    get_filename_component(abs ${proto} ABSOLUTE)
    set(root)
    foreach(dir IN LISTS arg_IMPORT_DIRS)
      get_filename_component(d ${dir} ABSOLUTE)
      string(FIND "${abs}" "${d}/" at)
      if(at EQUAL 0)
        set(root ${d})
        break()
      endif()
    endforeach()
    if(NOT root)
      get_filename_component(root ${abs} DIRECTORY)
    endif()
    file(RELATIVE_PATH rel ${root} ${abs})
    string(REGEX REPLACE "\\.proto$" "" base ${rel})
    set(iflags -I${root})
    foreach(dir IN LISTS arg_IMPORT_DIRS)
      get_filename_component(d ${dir} ABSOLUTE)
      list(APPEND iflags -I${d})
    endforeach()
    list(REMOVE_DUPLICATES iflags)
    if(arg_BACKEND STREQUAL "nanopb")
      set(pb ${arg_OUT_DIR}/${base}.pb)
      # protoc-gen-nanopb looks for <name>.options along its own -I list.
      list(JOIN iflags " " nanopb_opts)
      set(msg_gen --plugin=protoc-gen-nanopb=${PRPC_PROTOC_GEN_NANOPB}
                  "--nanopb_out=${nanopb_opts}:${arg_OUT_DIR}")
      string(REGEX REPLACE "\\.proto$" ".options" options ${abs})
      set(deps ${abs})
      if(EXISTS ${options})
        list(APPEND deps ${options})
      endif()
    else()
      set(pb ${arg_OUT_DIR}/${base}.pb-c)
      set(msg_gen --plugin=protoc-gen-c=${PRPC_PROTOC_GEN_C}
                  --c_out=${arg_OUT_DIR})
      set(deps ${abs})
    endif()
    set(outs ${pb}.c ${pb}.h
             ${arg_OUT_DIR}/${base}.prpc.c ${arg_OUT_DIR}/${base}.prpc.h)
    add_custom_command(
      OUTPUT ${outs}
      COMMAND ${CMAKE_COMMAND} -E make_directory ${arg_OUT_DIR}
      COMMAND ${PRPC_PROTOC} ${iflags} ${msg_gen}
              --plugin=protoc-gen-prpc=$<TARGET_FILE:piperpc::protoc-gen-prpc>
              --prpc_out=backend=${arg_BACKEND}:${arg_OUT_DIR}
              ${abs}
      DEPENDS ${deps} piperpc::protoc-gen-prpc
      COMMENT "prpc_generate: ${rel}"
      VERBATIM)
    list(APPEND srcs ${pb}.c ${arg_OUT_DIR}/${base}.prpc.c)
  endforeach()

  add_library(${target} STATIC ${srcs})
  target_include_directories(${target} PUBLIC ${arg_OUT_DIR})
  if(TARGET piperpc)
    target_link_libraries(${target} PUBLIC piperpc)
  else()
    target_link_libraries(${target} PUBLIC piperpc::piperpc)
  endif()
  if(arg_BACKEND STREQUAL "nanopb")
    target_link_libraries(${target} PUBLIC ${codec_lib}
                          nanopb::protobuf-nanopb-static)
  endif()
  set_target_properties(${target} PROPERTIES POSITION_INDEPENDENT_CODE ON)
endfunction()
