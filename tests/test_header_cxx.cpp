// The public C header compiles as C++ on its own (-Wall -Wextra -pedantic
// -Werror, C++11: the oldest standard a C++ caller may use) and its names
// link from C++ without the library's C++ headers.
#include <npairs/npairs.h>

int main() {
  npairs_options options;
  npairs_options_init(&options);
  return npairs_version_number() == NPAIRS_VERSION_NUMBER && options.struct_size == sizeof options ? 0 : 1;
}
