/* fuzz_raftdir.c — us_raftdir_plan over arbitrary directory listings (raftdir.h).
 *
 * The input is one file per line: the first byte of a line says whether the file is empty ('0'),
 * or holds entries if it is an open segment ('e'), anything else a plain non-empty file; the rest
 * is its name. Checked: a refused plan marks nothing and says why; the count is the number of
 * files marked; only closed segments (FIRST-LAST) are ever marked; and the plan is idempotent: once
 * the marked files are gone, the rest needs nothing more. */
#include "fuzz.h"

#include <stdbool.h>

#include "agent/raftdir.h"
#include "lib/log.h"

#define MAX_FILES 64

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    us_log_init("fuzz", -1);
    return 0;
}

static bool closed_name(const char *s)
{
    if (strlen(s) != 33 || s[16] != '-')
        return false;
    for (int i = 0; i < 33; i++)
        if (i != 16 && (s[i] < '0' || s[i] > '9'))
            return false;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char names[MAX_FILES][256];
    us_raftdir_file files[MAX_FILES], rest[MAX_FILES];
    bool move[MAX_FILES], again[MAX_FILES];
    int n = 0;
    size_t i = 0;
    while (i < size && n < MAX_FILES) {
        size_t j = i;
        while (j < size && data[j] != '\n')
            j++;
        if (j > i) {
            char flag = (char)data[i];
            size_t len = j - i - 1 < sizeof names[0] - 1 ? j - i - 1 : sizeof names[0] - 1;
            memcpy(names[n], data + i + 1, len);
            names[n][len] = '\0';
            files[n] = (us_raftdir_file){
                .name = names[n], .size = flag == '0' ? 0 : 100, .holds_entries = flag == 'e'};
            n++;
        }
        i = j + 1;
    }
    char why[512];
    int rc = us_raftdir_plan(files, n, move, why, sizeof why);
    int marked = 0;
    for (int k = 0; k < n; k++) {
        marked += move[k];
        FUZZ_CHECK(!move[k] || closed_name(files[k].name));
    }
    if (rc < 0) {
        FUZZ_CHECK(marked == 0 && why[0] != '\0');
        return 0;
    }
    FUZZ_CHECK(rc == marked);
    int m = 0;
    for (int k = 0; k < n; k++)
        if (!move[k])
            rest[m++] = files[k];
    FUZZ_CHECK(us_raftdir_plan(rest, m, again, why, sizeof why) == 0);
    return 0;
}
