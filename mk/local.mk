# ---------------------------------------------------------------------------
# Local run: the API on 127.0.0.1:$(API_PORT), the way the extension calls it
#
#   make run                      cargo lambda watch + a local redis-server
#   make run STORE=dynamodb       ... + a local moto (DynamoDB) server instead
#   make token USER=user_alice    a JWT the local API accepts (dev key pair)
#   make invoke FN=session-validate EVENT=events/...json
#   make stop                     stop what `make run` started
#
# Everything lives under the ignored .local/: redis data and log, moto log,
# pidfiles, the dev key pair, substituted events. The routes are the
# [workspace.metadata.lambda.watch.router] table of Cargo.toml.
#
# Included by the Makefile; uses its CARGO, PYTHON, TOOLS_ENV, MOTO_SERVER and
# the helpers need, port_open and stop_pid. Defines LOCAL, DEV_KEY, DEV_PUB,
# ORIGINS and ADMINS, which mk/api.mk, mk/client.mk and mk/drill.mk use.
# ---------------------------------------------------------------------------

# Settings (override on the command line: `make run API_PORT=9100`).
STORE      ?= redis
# Not 6379: a developer's own redis-server may be there.
REDIS_PORT ?= 6380
MOTO_PORT  ?= 5055
API_PORT   ?= 9000
TABLE      ?= sessions-local
# Set to the unpacked extension's id to allow chrome-extension://<id> too.
EXTENSION_ID ?=
# CORS origins of the local API; `scheme://host:*` matches any port.
ORIGINS    ?= http://localhost:*,http://127.0.0.1:*$(if $(EXTENSION_ID),$(comma)chrome-extension://$(EXTENSION_ID))
# User ids that see the global figures of /api/session/stats.
ADMINS     ?= user_admin
comma := ,

LOCAL     := $(CURDIR)/.local
API       := http://127.0.0.1:$(API_PORT)
REDIS_PID := $(LOCAL)/redis.pid
MOTO_PID  := $(LOCAL)/moto.pid
WATCH_PID := $(LOCAL)/watch.pid
# The dev key pair: the private half signs `make token`, the public half is the
# only key the local API trusts (CLERK_JWT_KEY). Never used outside .local/.
DEV_KEY := $(LOCAL)/dev-jwt-private.pem
DEV_PUB := $(LOCAL)/dev-jwt-public.pem
# The `iss` of dev tokens (shared/examples/dev_token.rs); the local API checks it.
DEV_ISSUER := css-picker-local-dev
DEV_TOKEN   = $(CARGO) run -q -p shared --example dev_token -- "$(DEV_KEY)"

# `make token USER=<id>`; USER from the login environment does not count.
ifeq ($(origin USER),command line)
TOKEN_USER := $(USER)
else
TOKEN_USER := user_local
endif

# A local DynamoDB server takes any credentials, but the SDK wants some.
LOCAL_AWS_ENV := AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_SESSION_TOKEN= \
  AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_PROFILE= AWS_ENDPOINT_URL=

# The functions' environment (cargo lambda watch passes its own on). Variables
# of the other store are emptied, which config reads as unset.
ifeq ($(STORE),dynamodb)
STORE_ENV := SESSION_STORE=dynamodb SESSION_TABLE=$(TABLE) \
  DYNAMODB_ENDPOINT=http://127.0.0.1:$(MOTO_PORT) REDIS_URL=
STORE_DESC := DynamoDB table $(TABLE) on moto at http://127.0.0.1:$(MOTO_PORT)
else
STORE_ENV := SESSION_STORE=redis REDIS_URL=redis://127.0.0.1:$(REDIS_PORT) \
  SESSION_TABLE= DYNAMODB_ENDPOINT=
STORE_DESC := redis-server at redis://127.0.0.1:$(REDIS_PORT) (data in .local/redis/)
endif
# CLERK_JWT_KEY goes on one line with `\n` escapes, which config turns back.
RUN_ENV = $(STORE_ENV) $(LOCAL_AWS_ENV) \
  CLERK_JWT_KEY="$$(awk '{printf "%s\\n", $$0}' "$(DEV_PUB)")" CLERK_JWKS_URL= \
  CLERK_ISSUER=$(DEV_ISSUER) ALLOWED_ORIGINS="$(ORIGINS)" ADMIN_USER_IDS="$(ADMINS)"

.PHONY: run stop token invoke dev-keys local-redis local-dynamodb local-bad-store
run: deps dev-keys local-$(if $(filter $(STORE),redis dynamodb),$(STORE),bad-store) ## local API on 127.0.0.1:9000 (STORE=redis|dynamodb)
	@if $(call port_open,$(API_PORT)); then \
	  echo "error: 127.0.0.1:$(API_PORT) is taken (another make run?); stop it or use API_PORT=<port>" >&2; exit 1; \
	fi
	@echo "==> building the functions (cargo build --workspace --bins)"
	$(CARGO) build --workspace --bins
	@echo "==> local API: $(API)  (cargo lambda watch, routes from Cargo.toml)"
	@awk '/^\[workspace\.metadata\.lambda\.watch\.router\]/ {on=1; next} /^\[/ {on=0} \
	  on && /^"/ {path=$$1; gsub(/"/, "", path)} \
	  on && /method *=/ && !/OPTIONS/ {split($$0, f, "\""); printf "      %-5s $(API)%s  ->  %s\n", f[2], path, f[4]}' Cargo.toml
	@echo "    store:   $(STORE_DESC)"
	@echo "    origins: $(ORIGINS)"
	@echo "    JWT:     make token USER=<id>   (RS256, dev key in .local/, the only key trusted)"
	@echo "    try:     curl -i $(API)/api/session/validate"
	@echo "    stop:    Ctrl-C, then make stop (stops the $(if $(filter dynamodb,$(STORE)),moto,redis) server)"
	@echo "$$$$" > "$(WATCH_PID)"; \
	exec env $(TOOLS_ENV) $(RUN_ENV) $(CARGO) lambda watch \
	  --invoke-address 127.0.0.1 --invoke-port $(API_PORT) --disable-cors

local-bad-store:
	@echo "error: STORE=$(STORE): use STORE=redis (the default) or STORE=dynamodb" >&2; exit 2

# A redis-server of our own, daemonized, data and log under .local/redis/.
local-redis: redis
	@mkdir -p "$(LOCAL)/redis"
	@if redis-cli -h 127.0.0.1 -p $(REDIS_PORT) ping 2>/dev/null | grep -q PONG; then \
	  if [ -s "$(REDIS_PID)" ] && kill -0 "$$(cat "$(REDIS_PID)")" 2>/dev/null; then \
	    echo "==> redis-server already running on 127.0.0.1:$(REDIS_PORT) (pid $$(cat "$(REDIS_PID)")): reusing it"; \
	  else \
	    echo "==> a redis-server not started by make run answers on 127.0.0.1:$(REDIS_PORT): using it (make stop leaves it alone)"; \
	  fi; \
	else \
	  echo "==> starting redis-server on 127.0.0.1:$(REDIS_PORT) (data and log in .local/redis/)"; \
	  rm -f "$(REDIS_PID)"; \
	  redis-server --bind 127.0.0.1 --port $(REDIS_PORT) --dir "$(LOCAL)/redis" \
	    --daemonize yes --pidfile "$(REDIS_PID)" --logfile "$(LOCAL)/redis/redis.log" \
	    --save 60 1 --appendonly no; \
	  for _ in $$(seq 50); do redis-cli -h 127.0.0.1 -p $(REDIS_PORT) ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done; \
	  redis-cli -h 127.0.0.1 -p $(REDIS_PORT) ping 2>/dev/null | grep -q PONG || { \
	    echo "error: redis-server did not answer on port $(REDIS_PORT) within 5 s; .local/redis/redis.log says:" >&2; \
	    tail -n 20 "$(LOCAL)/redis/redis.log" >&2; exit 1; }; \
	fi

# moto in the background (its own session, so Ctrl-C on watch leaves it), then
# the table. moto keeps its data in memory: `make stop` forgets the sessions.
local-dynamodb: venv
	@mkdir -p "$(LOCAL)/moto"
	@if [ -s "$(MOTO_PID)" ] && kill -0 "$$(cat "$(MOTO_PID)")" 2>/dev/null && $(call port_open,$(MOTO_PORT)); then \
	  echo "==> moto_server already running on 127.0.0.1:$(MOTO_PORT) (pid $$(cat "$(MOTO_PID)")): reusing it"; \
	elif $(call port_open,$(MOTO_PORT)); then \
	  echo "error: 127.0.0.1:$(MOTO_PORT) is taken by something make run did not start; use MOTO_PORT=<port>" >&2; exit 1; \
	else \
	  echo "==> starting moto_server on 127.0.0.1:$(MOTO_PORT) (log: .local/moto/moto.log)"; \
	  setsid "$(MOTO_SERVER)" -H 127.0.0.1 -p $(MOTO_PORT) >"$(LOCAL)/moto/moto.log" 2>&1 </dev/null & \
	  echo $$! > "$(MOTO_PID)"; \
	  for _ in $$(seq 300); do $(call port_open,$(MOTO_PORT)) && break; sleep 0.1; done; \
	  $(call port_open,$(MOTO_PORT)) || { \
	    echo "error: moto_server did not answer on port $(MOTO_PORT) within 30 s; .local/moto/moto.log says:" >&2; \
	    tail -n 20 "$(LOCAL)/moto/moto.log" >&2; exit 1; }; \
	fi
	@echo "==> creating table $(TABLE) if missing"
	@env $(LOCAL_AWS_ENV) $(CARGO) run -q -p shared --example create_table -- http://127.0.0.1:$(MOTO_PORT) $(TABLE)

stop: ## stop what make run started (watch, redis-server, moto_server)
	@$(call stop_pid,$(WATCH_PID),cargo-lambda,INT)
	@$(call stop_pid,$(REDIS_PID),redis-server,TERM)
	@$(call stop_pid,$(MOTO_PID),moto_server,TERM)

dev-keys: $(DEV_KEY) $(DEV_PUB)

$(DEV_KEY):
	@$(call need,openssl,openssl)
	@mkdir -p "$(LOCAL)"
	@echo "==> generating the dev JWT key pair in .local/ (trusted by make run only)" >&2
	@umask 077 && openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$@" 2>/dev/null

$(DEV_PUB): $(DEV_KEY)
	@openssl pkey -in "$<" -pubout -out "$@"

token: dev-keys ## print a JWT the local API accepts: make token USER=<id>
	@$(DEV_TOKEN) "$(TOKEN_USER)"

# Placeholders in the event: $${JWT} (user_events), $${OTHER_JWT} (user_other),
# $${SESSION_TOKEN} (a fresh session of user_events, made through the local API),
# $${SESSION_ID} (the session id of another fresh one, from the local API's list).
invoke: dev-keys ## make invoke FN=<function> EVENT=events/<file>.json, against make run
	@if [ -z "$(FN)" ] || [ -z "$(EVENT)" ]; then \
	  echo "usage: make invoke FN=<function> EVENT=events/<file>.json (with make run going)" >&2; exit 2; fi
	@[ -f "$(EVENT)" ] || { echo "error: $(EVENT): no such file" >&2; exit 2; }
	@$(call port_open,$(API_PORT)) || { \
	  echo "error: nothing answers on 127.0.0.1:$(API_PORT): start make run first (another terminal)" >&2; exit 1; }
	@mkdir -p "$(LOCAL)/invoke"
	@jwt=$$($(DEV_TOKEN) user_events); other=$$($(DEV_TOKEN) user_other); session=; id=; \
	new_session() { \
	  reply=$$(curl -sS -m 300 -X POST "$(API)/api/session/create" -H "Authorization: Bearer $$jwt" \
	    -H 'Content-Type: application/json' -d '{"remember_me": false}'); \
	  printf '%s' "$$reply" | $(PYTHON) -c 'import json, sys; print(json.load(sys.stdin)["session_token"])' || { \
	    echo "error: no session token from session-create: $$reply" >&2; return 1; }; \
	}; \
	if grep -qF '$${SESSION_TOKEN}' "$(EVENT)"; then \
	  $(call need,curl,curl); \
	  echo "==> POST $(API)/api/session/create as user_events for \$${SESSION_TOKEN}"; \
	  session=$$(new_session) || exit 1; \
	fi; \
	if grep -qF '$${SESSION_ID}' "$(EVENT)"; then \
	  $(call need,curl,curl); \
	  echo "==> POST $(API)/api/session/create as user_events for \$${SESSION_ID}"; \
	  id=$$(new_session | $(PYTHON) -c 'import base64, hashlib, sys; print(base64.urlsafe_b64encode(hashlib.sha256(sys.stdin.read().strip().encode()).digest()[:12]).decode())') || exit 1; \
	fi; \
	out="$(LOCAL)/invoke/$(notdir $(EVENT))"; \
	sed -e "s|\$${JWT}|$$jwt|g" -e "s|\$${OTHER_JWT}|$$other|g" -e "s|\$${SESSION_TOKEN}|$$session|g" \
	  -e "s|\$${SESSION_ID}|$$id|g" "$(EVENT)" > "$$out"; \
	echo "==> cargo lambda invoke $(FN) --data-file .local/invoke/$(notdir $(EVENT))"; \
	$(TOOLS_ENV) $(CARGO) lambda invoke "$(FN)" --invoke-address 127.0.0.1 --invoke-port $(API_PORT) --data-file "$$out"
