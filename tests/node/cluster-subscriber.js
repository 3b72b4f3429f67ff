// socket.io-client as a room subscriber, the reference the cluster tests compare Pulselink to.
//
// Usage: node cluster-subscriber.js URL ROOM EVENT
// Connects with socket.io-client's defaults (WebSocket only, as through a round-robin balancer),
// subscribes with "room:subscribe" {roomId} on every connect that did not recover the session
// (as an app must: a new session is in no room), and prints one line per happening:
//   "ready <node>"        subscribed the first time, on that node
//   "connect <recovered>" every later connect, true when the server restored the session
//   "event <n> <argc>"    a room event: its n and how many arguments reached the app
"use strict";
const { io } = require("socket.io-client");

const [url, roomId, event] = process.argv.slice(2);
const socket = io(url, { transports: ["websocket"] });
let first = true;
socket.on("connect", () => {
  if (!first) process.stdout.write(`connect ${socket.recovered}\n`);
  if (socket.recovered) return;
  socket.emit("room:subscribe", { roomId }, () => {
    if (!first) return;
    first = false;
    socket.emit("node?", (node) => process.stdout.write(`ready ${node}\n`));
  });
});
socket.on(event, (...args) => process.stdout.write(`event ${args[0].n} ${args.length}\n`));
