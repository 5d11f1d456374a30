/*
 * supervise_sessions.c: watch privileged sessions live from your own
 * product, and stop one the moment it shows something it must not.
 *
 * The program embeds the cpam hub (what `cpam-server run` runs) over a data
 * dir. Optionally it first stores a service's password in the hub's vault
 * (encrypted; audited with the actor "supervisor", never with the secret),
 * so vendors reach that host without ever learning its password.
 *
 * Then it reads the hub's events. When a session starts, it watches its
 * terminal (cpam_hub_watch, audited as session.watch.start/.stop): the first
 * frame paints the current screen, the next ones carry what the target
 * shows. What the vendor types is never shown, only what the target echoes.
 * When the output contains the forbidden text, the session is ended at once
 * (cpam_hub_terminate): the reason is audited and shown to the vendor in
 * their terminal. This tutorial watches one session at a time; a product
 * would give each watch its own thread.
 *
 * What users do inside their sessions arrives as events too
 * (CPAM_EVENT_KIND_SESSION_ACTIVITY): each file moved through File Transfer
 * with its path, direction, size and SHA-256, each change on the target's
 * files, each command. This program prints them; a product would forward
 * them to its own log or SIEM.
 *
 * Usage: supervise_sessions DATA_DIR LISTEN FORBID STOP_FILE [SERVICE USER PASSWORD_FILE]
 *   DATA_DIR       made by `cpam-server init` (with its vault.key)
 *   LISTEN         IP:PORT the hub serves gatekeepers and vendors on
 *   FORBID         end a session whose output shows this text
 *   STOP_FILE      the program stops once this file exists
 *   SERVICE USER PASSWORD_FILE
 *                  store USER's password (first line of PASSWORD_FILE) as
 *                  the credential of SERVICE@CUSTOMER first
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cpam.h"

#define ACTOR "supervisor"

static int fail(const char *what, cpam_status status) {
    char message[512];
    size_t len = 0;
    cpam_last_error_message(message, sizeof message, &len);
    fprintf(stderr, "%s failed: %s: %s\n", what, cpam_status_name(status), message);
    return 1;
}

static bool stop_requested(const char *stop_file) { return access(stop_file, F_OK) == 0; }

/* The session id in an event's JSON: the value of the first "id" key. A real
 * product would use its JSON library. */
static bool session_id(const char *json, char *id, size_t len) {
    const char *at = strstr(json, "\"id\":\"");
    if (!at) return false;
    at += 6;
    const char *end = strchr(at, '"');
    if (!end || (size_t)(end - at) >= len) return false;
    memcpy(id, at, (size_t)(end - at));
    id[end - at] = '\0';
    return true;
}

/* The last bytes the target showed, to look for the forbidden text across
 * frames. */
struct tail {
    char text[4096];
    size_t len;
};

static void tail_add(struct tail *t, const uint8_t *data, size_t len) {
    for (size_t i = 0; i < len; i++) {
        if (t->len == sizeof t->text - 1) {
            memmove(t->text, t->text + 1, t->len - 1);
            t->len--;
        }
        /* NUL bytes would hide what follows them from strstr. */
        t->text[t->len++] = data[i] ? (char)data[i] : ' ';
    }
    t->text[t->len] = '\0';
}

/* Watches session `id` until it ends, ending it on the forbidden text. */
static int supervise(cpam_hub *hub, const char *id, const char *forbid, const char *stop_file) {
    cpam_watch *watch = NULL;
    cpam_status st;
    /* The terminal opens a moment after the session starts. */
    for (int tries = 0;; tries++) {
        st = cpam_hub_watch(hub, id, ACTOR, &watch);
        if (st == CPAM_OK) break;
        if (st == CPAM_NOT_FOUND) return 0; /* already over */
        if (st != CPAM_CONFLICT || tries == 100) return fail("cpam_hub_watch", st);
        usleep(100 * 1000);
    }
    printf("[%s] watching\n", id);
    fflush(stdout);
    struct tail tail = {.len = 0};
    bool terminated = false;
    while (!stop_requested(stop_file)) {
        cpam_watch_frame *frame = NULL;
        st = cpam_watch_next(watch, 500, &frame);
        if (st == CPAM_TIMEOUT) continue;
        if (st == CPAM_CLOSED) break;
        if (st != CPAM_OK) {
            cpam_watch_free(watch);
            return fail("cpam_watch_next", st);
        }
        cpam_watch_frame_kind kind = cpam_watch_frame_get_kind(frame);
        if (kind == CPAM_WATCH_FRAME_KIND_SNAPSHOT || kind == CPAM_WATCH_FRAME_KIND_OUTPUT) {
            const uint8_t *data = NULL;
            size_t len = 0;
            cpam_watch_frame_get_data(frame, &data, &len);
            printf("[%s] shows: %.*s\n", id, (int)len, (const char *)data);
            fflush(stdout);
            tail_add(&tail, data, len);
            if (!terminated && strstr(tail.text, forbid)) {
                char reason[256];
                snprintf(reason, sizeof reason, "the output showed '%s', which this customer does not allow",
                         forbid);
                st = cpam_hub_terminate(hub, id, ACTOR, reason);
                if (st == CPAM_OK) printf("[%s] terminated: %s\n", id, reason);
                else if (st != CPAM_NOT_FOUND) fail("cpam_hub_terminate", st);
                terminated = true;
            }
        } else if (kind == CPAM_WATCH_FRAME_KIND_RESIZE) {
            uint16_t cols = 0, rows = 0;
            cpam_watch_frame_get_size(frame, &cols, &rows);
            printf("[%s] resized to %ux%u\n", id, cols, rows);
        } else if (kind == CPAM_WATCH_FRAME_KIND_END) {
            printf("[%s] ended: %s\n", id, cpam_watch_frame_get_reason(frame));
        }
        fflush(stdout);
        cpam_watch_frame_free(frame);
    }
    cpam_watch_free(watch);
    return 0;
}

static int store_password(cpam_hub *hub, const char *service, const char *user, const char *path) {
    char password[512];
    FILE *f = fopen(path, "r");
    if (!f || !fgets(password, sizeof password, f)) {
        fprintf(stderr, "cannot read the password from %s\n", path);
        if (f) fclose(f);
        return 1;
    }
    fclose(f);
    password[strcspn(password, "\r\n")] = '\0';
    cpam_status st =
        cpam_hub_vault_set(hub, service, user, CPAM_CREDENTIAL_KIND_PASSWORD, password, ACTOR);
    memset(password, 0, sizeof password);
    if (st != CPAM_OK) return fail("cpam_hub_vault_set", st);
    printf("stored the credential of %s\n", service);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 5 && argc != 8) {
        fprintf(stderr,
                "usage: %s DATA_DIR LISTEN FORBID STOP_FILE [SERVICE USER PASSWORD_FILE]\n",
                argv[0]);
        return 2;
    }
    const char *forbid = argv[3], *stop_file = argv[4];
    cpam_hub *hub = NULL;
    cpam_status st = cpam_hub_new(argv[1], &hub);
    if (st != CPAM_OK) return fail("cpam_hub_new", st);
    int rc = 0;
    if (argc == 8 && store_password(hub, argv[5], argv[6], argv[7]) != 0) {
        cpam_hub_free(hub);
        return 1;
    }
    char *vault = NULL;
    st = cpam_hub_vault_list(hub, &vault);
    if (st != CPAM_OK) {
        cpam_hub_free(hub);
        return fail("cpam_hub_vault_list", st);
    }
    printf("vault: %s\n", vault);
    cpam_string_free(vault);

    st = cpam_hub_run(hub, argv[2]);
    if (st != CPAM_OK) {
        cpam_hub_free(hub);
        return fail("cpam_hub_run", st);
    }
    char addr[64];
    size_t len = 0;
    cpam_hub_local_addr(hub, addr, sizeof addr, &len);
    printf("hub listening on %s\n", addr);
    fflush(stdout);

    while (!stop_requested(stop_file)) {
        cpam_event *event = NULL;
        st = cpam_hub_next_event(hub, 200, &event);
        if (st == CPAM_TIMEOUT) continue;
        if (st != CPAM_OK) {
            rc = fail("cpam_hub_next_event", st);
            break;
        }
        char id[128];
        if (cpam_event_get_kind(event) == CPAM_EVENT_KIND_SESSION_STARTED &&
            session_id(cpam_event_get_json(event), id, sizeof id)) {
            cpam_event_free(event);
            if (supervise(hub, id, forbid, stop_file) != 0) rc = 1;
            continue;
        }
        if (cpam_event_get_kind(event) == CPAM_EVENT_KIND_SESSION_ACTIVITY) {
            printf("activity: %s\n", cpam_event_get_json(event));
            fflush(stdout);
        }
        cpam_event_free(event);
    }
    char *live = NULL;
    if (cpam_hub_sessions(hub, &live) == CPAM_OK) {
        printf("live sessions at stop: %s\n", live);
        cpam_string_free(live);
    }
    cpam_hub_stop(hub);
    cpam_hub_free(hub);
    return rc;
}
