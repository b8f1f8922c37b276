/* fuzz_services.c — the services file parser (us_config_parse_services), and what an accepted
 * file becomes: each definition survives the JSON encoding of the replicated state unchanged,
 * and the `services` command built from it applies to a fresh state. */
#include "fuzz.h"

#include "config/config.h"
#include "core/fsm.h"
#include "lib/log.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    us_log_init("fuzz", -1);
    return 0;
}

static void check_def(const us_service_def *d)
{
    FUZZ_CHECK(us_name_valid(d->name));
    FUZZ_CHECK(d->n_nodes >= 0 && d->n_nodes <= US_MAX_NODES);
    FUZZ_CHECK(d->n_vips >= 0 && d->n_vips <= US_MAX_VIPS);
    FUZZ_CHECK(d->n_checks >= 0 && d->n_checks <= US_MAX_CHECKS);
    FUZZ_CHECK(d->standbys >= 0);
    FUZZ_CHECK(d->rise >= 1 && d->fall >= 1);
    FUZZ_CHECK(d->check_interval_ms > 0 && d->check_timeout_ms > 0);
    for (int i = 0; i < d->n_nodes; i++)
        FUZZ_CHECK(us_name_valid(d->nodes[i]));

    /* JSON round trip (what the replicated state and snapshots carry). */
    json_t *j = us_service_def_to_json(d);
    FUZZ_CHECK(j != NULL);
    us_service_def *back = calloc(1, sizeof *back);
    FUZZ_CHECK(back && us_service_def_from_json(back, j) == 0);
    json_t *j2 = us_service_def_to_json(back);
    if (!json_equal(j, j2)) {
        char *a = json_dumps(j, JSON_SORT_KEYS), *b = json_dumps(j2, JSON_SORT_KEYS);
        fprintf(stderr, "round trip changed the definition:\n%s\n%s\n", a, b);
        abort();
    }
    json_decref(j);
    json_decref(j2);
    free(back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static us_errors err;
    static us_service_set set;
    static us_state state;
    char *text = fuzz_copy(data, size);
    memset(&err, 0, sizeof err);
    us_service_set_free(&set);
    int rc = us_config_parse_services(text, size, "fuzz.services", &set, &err);
    if (rc == 0) {
        FUZZ_CHECK(err.n == 0);
        FUZZ_CHECK(set.n >= 0 && set.n <= US_MAX_SERVICES);
        for (int i = 0; i < set.n; i++) {
            check_def(&set.svc[i]);
            for (int k = 0; k < i; k++)
                FUZZ_CHECK(strcmp(set.svc[i].name, set.svc[k].name) != 0);
        }
        us_state_free(&state);
        json_t *cmd = us_cmd_services(&set);
        int applied = us_state_apply(&state, cmd);
        json_decref(cmd);
        FUZZ_CHECK(applied == US_APPLY_OK || (set.n == 0 && applied == US_APPLY_NOOP));
        FUZZ_CHECK(state.services.n == set.n);
    } else {
        FUZZ_CHECK(rc == -1 && err.n > 0);
        for (int i = 0; i < err.n; i++) /* the API and check-config --json send them as JSON */
            FUZZ_UTF8(err.msg[i]);
        FUZZ_CHECK(set.n == 0); /* untouched */
    }
    free(text);
    return 0;
}
