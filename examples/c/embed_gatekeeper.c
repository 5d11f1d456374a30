/*
 * embed_gatekeeper.c: run a cpam gatekeeper inside your own appliance.
 *
 * A gatekeeper sits inside the customer's network. It dials OUT to the cpam
 * server and holds one SSH tunnel; vendors reach the customer's hosts only
 * through it, and only the targets its allow-list names. This program does
 * what an appliance's firmware would do:
 *
 *   1. register with the one-time code an administrator issued
 *      (`cpam-server gatekeeper add gk1 --customer acme`),
 *   2. run the tunnel in the background and wait until it is online,
 *   3. flip the customer's switch off and on again (what a "remote support"
 *      toggle on the appliance's front panel would do),
 *   4. print every event until asked to stop, then stop cleanly.
 *
 * Usage: embed_gatekeeper SERVER CODE STATE_DIR ALLOW STOP_FILE
 *   SERVER     the server's SSH address, HOST:PORT
 *   CODE       the one-time registration code
 *   STATE_DIR  where the gatekeeper keeps its key and the pinned server key
 *   ALLOW      space-separated CIDR:PORTS rules, e.g. "10.1.0.0/16:22,3389"
 *   STOP_FILE  the program stops once this file exists
 *
 * Build: cc -Wall -Wextra embed_gatekeeper.c -I include -L target/debug -lcpam
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cpam.h"

/* Every fallible cpam call returns a cpam_status; CPAM_OK is 0. On failure,
 * cpam_last_error_message() tells what went wrong on this thread. */
static int fail(const char *what, cpam_status status) {
    char message[512];
    size_t len = 0;
    cpam_last_error_message(message, sizeof message, &len);
    fprintf(stderr, "%s failed: %s: %s\n", what, cpam_status_name(status), message);
    return 1;
}

/* Waits up to timeout_ms for an event of `kind`, printing every event seen.
 * Events are pulled: no library thread ever calls into this program. */
static cpam_status wait_for(const cpam_gatekeeper *gk, cpam_event_kind kind, uint32_t timeout_ms) {
    for (;;) {
        cpam_event *event = NULL;
        cpam_status st = cpam_gatekeeper_next_event(gk, timeout_ms, &event);
        if (st != CPAM_OK) {
            return st; /* CPAM_TIMEOUT when nothing came in time */
        }
        /* The JSON stays valid until the event is freed. */
        printf("event: %s\n", cpam_event_get_json(event));
        cpam_event_kind got = cpam_event_get_kind(event);
        cpam_event_free(event);
        if (got == kind) {
            return CPAM_OK;
        }
    }
}

static void print_status(const cpam_gatekeeper *gk) {
    cpam_gatekeeper_state state;
    if (cpam_gatekeeper_status(gk, &state) == CPAM_OK) {
        printf("status: registered=%d running=%d online=%d disabled=%d\n",
               state.registered, state.running, state.online, state.disabled);
    }
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s SERVER CODE STATE_DIR ALLOW STOP_FILE\n", argv[0]);
        return 2;
    }
    const char *server = argv[1], *code = argv[2], *state_dir = argv[3];
    const char *allow = argv[4], *stop_file = argv[5];
    /* Line-buffered output, so a supervisor reading our log sees each line. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("libcpam %s\n", cpam_version());

    /* A handle owns its own threads. Out-parameters are written only on
     * success, so `gk` stays NULL if this fails. */
    cpam_gatekeeper *gk = NULL;
    cpam_status st = cpam_gatekeeper_new(state_dir, &gk);
    if (st != CPAM_OK) {
        return fail("cpam_gatekeeper_new", st);
    }
    int rc = 1;

    /* 1. Register. Passing NULL as the fingerprint trusts the server's key
     * on first use and pins it; pass "SHA256:..." (printed by
     * `cpam-server init`) to check it. A used or unknown code is
     * CPAM_UNAUTHENTICATED. */
    st = cpam_gatekeeper_register(gk, server, code, NULL);
    if (st != CPAM_OK) {
        fail("cpam_gatekeeper_register", st);
        goto out;
    }
    printf("registered\n");
    /* What registration kept in the state dir: our id and name, the server
     * and its pinned key. Strings the library returns are freed by it. */
    char *info = NULL;
    if ((st = cpam_gatekeeper_info(gk, &info)) != CPAM_OK) {
        fail("cpam_gatekeeper_info", st);
        goto out;
    }
    printf("info: %s\n", info);
    cpam_string_free(info);

    /* 2. Run. This returns at once; the tunnel lives on the handle's
     * threads and reconnects with backoff if the server goes away. */
    st = cpam_gatekeeper_run(gk, allow);
    if (st != CPAM_OK) {
        fail("cpam_gatekeeper_run", st);
        goto out;
    }
    st = wait_for(gk, CPAM_EVENT_KIND_GATEKEEPER_ONLINE, 20000);
    if (st != CPAM_OK) {
        fail("waiting to come online", st);
        goto out;
    }
    printf("online\n");
    print_status(gk);

    /* 3. The customer's switch. Disabled, the gatekeeper refuses new
     * sessions and closes live ones; the server learns it at once. */
    if ((st = cpam_gatekeeper_disable(gk)) != CPAM_OK) {
        fail("cpam_gatekeeper_disable", st);
        goto out;
    }
    if ((st = wait_for(gk, CPAM_EVENT_KIND_GATEKEEPER_SWITCH, 5000)) != CPAM_OK) {
        fail("waiting for the switch", st);
        goto out;
    }
    print_status(gk);
    if ((st = cpam_gatekeeper_enable(gk)) != CPAM_OK) {
        fail("cpam_gatekeeper_enable", st);
        goto out;
    }
    if ((st = wait_for(gk, CPAM_EVENT_KIND_GATEKEEPER_SWITCH, 5000)) != CPAM_OK) {
        fail("waiting for the switch", st);
        goto out;
    }
    print_status(gk);
    printf("ready\n");

    /* 4. An event loop: pull with a short timeout so we can also check for
     * our own stop condition. A real appliance would do this on its own
     * thread and show the events on its display. */
    while (access(stop_file, F_OK) != 0) {
        cpam_event *event = NULL;
        st = cpam_gatekeeper_next_event(gk, 200, &event);
        if (st == CPAM_OK) {
            printf("event: %s\n", cpam_event_get_json(event));
            cpam_event_free(event);
        } else if (st != CPAM_TIMEOUT) {
            fail("cpam_gatekeeper_next_event", st);
            goto out;
        }
    }

    /* Stop: closes the tunnel (live sessions end) and waits for it. After
     * that the queue drains and then reports CPAM_CLOSED. */
    if ((st = cpam_gatekeeper_stop(gk)) != CPAM_OK) {
        fail("cpam_gatekeeper_stop", st);
        goto out;
    }
    for (;;) {
        cpam_event *event = NULL;
        st = cpam_gatekeeper_next_event(gk, 1000, &event);
        if (st != CPAM_OK) {
            break;
        }
        printf("event: %s\n", cpam_event_get_json(event));
        cpam_event_free(event);
    }
    printf("stopped: %s\n", cpam_status_name(st));
    rc = st == CPAM_CLOSED ? 0 : 1;
out:
    /* _free stops the gatekeeper if it still runs; NULL is fine too. */
    cpam_gatekeeper_free(gk);
    return rc;
}
