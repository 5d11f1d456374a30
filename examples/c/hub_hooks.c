/*
 * hub_hooks.c: run the cpam server engine inside your own PAM product, with
 * your own parts plugged in.
 *
 * The hub is what `cpam-server run` runs: the SSH port gatekeepers dial out
 * to and vendors' Connection Managers open sessions through. Embedded, it
 * takes three callbacks from the integrator:
 *
 *   - an audit sink: every audit record, once sealed into the hash chain and
 *     stored, is also handed to you as JSON (forward it to your SIEM);
 *   - an access hook: the last word on every session the built-in policy
 *     allowed (a ticket check, a change window, a second approver);
 *   - a credential source: the secret a protocol proxy injects so the vendor
 *     never sees it (asked for by the recording proxies; plain TCP sessions
 *     need none).
 *
 * Callbacks run on the hub's own threads, possibly several at once, so they
 * must be thread-safe and quick. Everything else is pulled: the program
 * reads events (gatekeepers online/offline, sessions started/ended/refused)
 * when it wants to.
 *
 * Usage: hub_hooks DATA_DIR DENIED_SERVICE STOP_FILE
 *   DATA_DIR        made by `cpam-server init`; administer it with the usual
 *                   `cpam-server ... --data-dir DATA_DIR` commands
 *   DENIED_SERVICE  the access hook refuses every session to this service
 *   STOP_FILE       the program stops once this file exists
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cpam.h"

static int fail(const char *what, cpam_status status) {
    char message[512];
    size_t len = 0;
    cpam_last_error_message(message, sizeof message, &len);
    fprintf(stderr, "%s failed: %s: %s\n", what, cpam_status_name(status), message);
    return 1;
}

/* What the callbacks share with main(), passed as their `userdata`. */
struct hooks {
    const char *denied_service;
    atomic_int audit_records;
    atomic_int checks;
};

/* The audit sink. `record_json` is only valid during the call. */
static void on_audit(void *userdata, const char *record_json) {
    struct hooks *h = userdata;
    atomic_fetch_add(&h->audit_records, 1);
    printf("audit: %s\n", record_json);
}

/* The access hook. The check is JSON; a real product would parse it with its
 * JSON library. Here a substring test on the service name is enough. */
static bool on_access(void *userdata, const char *check_json, char *reason, size_t reason_len) {
    struct hooks *h = userdata;
    atomic_fetch_add(&h->checks, 1);
    char needle[256];
    snprintf(needle, sizeof needle, "\"name\":\"%s\"", h->denied_service);
    /* The service object comes after "service":, so look from there. */
    const char *service = strstr(check_json, "\"service\":");
    if (service != NULL && strstr(service, needle) != NULL) {
        snprintf(reason, reason_len, "change window closed for %s", h->denied_service);
        printf("access hook: deny %s\n", h->denied_service);
        return false;
    }
    printf("access hook: allow\n");
    return true;
}

/* The credential source: fill `credential`, or leave it empty when the
 * service needs none. Return false to fail the session. */
static bool on_credential(void *userdata, const char *request_json, cpam_credential *credential) {
    (void)userdata;
    if (strstr(request_json, "\"kind\":\"rdp\"") != NULL) {
        return cpam_credential_set(credential, CPAM_CREDENTIAL_KIND_PASSWORD, "svc-rdp",
                                   "from-your-vault") == CPAM_OK;
    }
    return true;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s DATA_DIR DENIED_SERVICE STOP_FILE\n", argv[0]);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct hooks hooks = {.denied_service = argv[2]};
    atomic_init(&hooks.audit_records, 0);
    atomic_init(&hooks.checks, 0);

    /* A hub over a data dir; a database URL such as "sqlite::memory:" works too. */
    cpam_hub *hub = NULL;
    cpam_status st = cpam_hub_new(argv[1], &hub);
    if (st != CPAM_OK) {
        return fail("cpam_hub_new", st);
    }
    int rc = 1;
    /* Plug the callbacks in before serving, so no session escapes them. */
    if ((st = cpam_hub_set_audit_sink(hub, on_audit, &hooks)) != CPAM_OK ||
        (st = cpam_hub_set_access_hook(hub, on_access, &hooks)) != CPAM_OK ||
        (st = cpam_hub_set_credential_source(hub, on_credential, &hooks)) != CPAM_OK) {
        fail("setting the callbacks", st);
        goto out;
    }
    /* Serve on a free loopback port (NULL would use the data dir's address). */
    if ((st = cpam_hub_run(hub, "127.0.0.1:0")) != CPAM_OK) {
        fail("cpam_hub_run", st);
        goto out;
    }
    char addr[64];
    size_t len = 0;
    if ((st = cpam_hub_local_addr(hub, addr, sizeof addr, &len)) != CPAM_OK) {
        fail("cpam_hub_local_addr", st);
        goto out;
    }
    printf("hub listening on %s\n", addr);

    /* The event loop. */
    while (access(argv[3], F_OK) != 0) {
        cpam_event *event = NULL;
        st = cpam_hub_next_event(hub, 200, &event);
        if (st == CPAM_OK) {
            printf("event %d: %s\n", (int)cpam_event_get_kind(event), cpam_event_get_json(event));
            cpam_event_free(event);
        } else if (st != CPAM_TIMEOUT) {
            fail("cpam_hub_next_event", st);
            goto out;
        }
    }

    /* Stop: live sessions end and their end records are written. */
    if ((st = cpam_hub_stop(hub)) != CPAM_OK) {
        fail("cpam_hub_stop", st);
        goto out;
    }
    printf("hub stopped: %d audit records, %d access checks\n",
           atomic_load(&hooks.audit_records), atomic_load(&hooks.checks));

    /* Check the audit log's hash chain, as `cpam-server audit verify` does. */
    cpam_audit_report *report = NULL;
    if ((st = cpam_audit_verify(argv[1], &report)) != CPAM_OK) {
        fail("cpam_audit_verify", st);
        goto out;
    }
    if (cpam_audit_report_is_intact(report)) {
        printf("audit chain intact: %llu records\n",
               (unsigned long long)cpam_audit_report_checked(report));
        rc = 0;
    } else {
        printf("audit chain broken at seq %lld: %s\n",
               (long long)cpam_audit_report_broken_seq(report), cpam_audit_report_problem(report));
    }
    cpam_audit_report_free(report);
out:
    cpam_hub_free(hub);
    return rc;
}
