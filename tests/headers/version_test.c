/*
 * fwx tests - one version: the library's fwx_version() and fwx_version_string() say what the
 * headers' FWX_VERSION_* macros say, and both say meson's project version (FWX_EXPECT_VERSION).
 * The SONAME and the file name are check-soname.sh's.
 * SPDX-License-Identifier: MIT
 */
#include <fwx/fwx.h>

#include <stdio.h>
#include <string.h>

int main(void)
{
    int failures = 0;
    char v[32];
    snprintf(v, sizeof v, "%u.%u.%u", fwx_version() >> 16, (fwx_version() >> 8) & 0xFFu, fwx_version() & 0xFFu);
    printf("headers %s (0x%06x), library %s (0x%06x, %s), meson %s\n", FWX_VERSION_STRING, (unsigned)FWX_VERSION_HEX,
           fwx_version_string(), fwx_version(), v, FWX_EXPECT_VERSION);
    if (fwx_version() != (unsigned)FWX_VERSION_HEX) {
        printf("fwx_version() 0x%06x is not FWX_VERSION_HEX 0x%06x\n", fwx_version(), (unsigned)FWX_VERSION_HEX);
        failures++;
    }
    if (strcmp(fwx_version_string(), FWX_VERSION_STRING) != 0 || strcmp(fwx_version_string(), v) != 0) {
        printf("fwx_version_string() \"%s\" disagrees with the headers or with fwx_version()\n", fwx_version_string());
        failures++;
    }
    if (strcmp(FWX_VERSION_STRING, FWX_EXPECT_VERSION) != 0) {
        printf("the headers say %s, meson says %s\n", FWX_VERSION_STRING, FWX_EXPECT_VERSION);
        failures++;
    }
    if (FWX_ABI_VERSION != (((uint32_t)FWX_VERSION_MAJOR << 16) | FWX_VERSION_MINOR)) {
        printf("FWX_ABI_VERSION 0x%08x is not the version's major.minor\n", (unsigned)FWX_ABI_VERSION);
        failures++;
    }
    if (strcmp(fwx_log_level_name(FWX_LOG_WARN), "warn") != 0 || strcmp(fwx_log_level_name((fwx_log_level)9), "info") != 0) {
        printf("fwx_log_level_name is wrong\n");
        failures++;
    }
    return failures ? 1 : 0;
}
