# SPDX-License-Identifier: MIT
# Writes OUT, a C file holding each migration in FILES as a string, in order.
# Invoked by CMakeLists.txt: cmake -DOUT=... -DFILES=a,b -P embed_sql.cmake
string(REPLACE "," ";" FILES "${FILES}")
set(body "/* Generated from sql/ by cmake/embed_sql.cmake; do not edit. */\n")
string(APPEND body "#include \"store/migrations.h\"\n\n")
string(APPEND body "const struct store_migration store_migrations[] = {\n")
set(count 0)
foreach(f ${FILES})
  get_filename_component(name ${f} NAME)
  file(READ ${f} hex HEX)
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "\\\\x\\1" esc "${hex}")
  string(SUBSTRING "${name}" 0 3 num)
  math(EXPR num "${num}")
  string(APPEND body "    {${num}, \"${name}\", \"${esc}\"},\n")
  math(EXPR count "${count} + 1")
endforeach()
string(APPEND body "};\nconst unsigned store_migration_count = ${count};\n")
file(WRITE ${OUT} "${body}")
