#!/bin/bash
# Runs once, when the MongoDB data volume is first initialised (docker-entrypoint-initdb.d):
# creates the application user the services log in with, from the generated secrets. The
# entrypoint sources this file with "${mongo[@]}" already authenticated as the root user.
set -euo pipefail
APP_USER="$(cat /run/secrets/mongo_app_user)" APP_PASSWORD="$(cat /run/secrets/mongo_app_password)" \
"${mongo[@]}" admin --eval '
  db.createUser({
    user: process.env.APP_USER,
    pwd: process.env.APP_PASSWORD,
    roles: [{role: "readWriteAnyDatabase", db: "admin"}, {role: "clusterMonitor", db: "admin"}],
  })'
