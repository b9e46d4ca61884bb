/* version.c - the library's version at run time (kvtc.h). */
#include "kvtc.h"

unsigned kvtc_version_number(void) { return KVTC_VERSION_NUMBER; }

const char *kvtc_version_string(void) { return KVTC_VERSION_STRING; }
