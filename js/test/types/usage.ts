// Type-checked by build.test.mjs (tsc --strict): code a TypeScript app would write.

import Snorky, { type Delta, type PubSubRestore, type State, ArrayCollection, PubSub, SnorkyError } from "../../src/snorky.js";

const snorky = new Snorky(
  WebSocket,
  "/ws",
  { pubsub: PubSub, chat: Snorky.Chat, cursors: Snorky.Cursors, datasync: Snorky.DataSync, progress: Snorky.Progress },
  { backoff: { base: 250, max: 10000 }, rpcTimeout: 5000, getToken: async () => "token" },
);

const other = new Snorky({ url: "/ws", services: { messaging: Snorky.Messaging }, debug: true });
other.disconnect();

snorky.stateChanged.add((state: State, previous: State) => console.log(previous, "->", state));
snorky.disconnected.add(({ code, willReconnect }) => console.log(code, willReconnect));

async function main(): Promise<void> {
  const pubsub = snorky.services.pubsub;
  const position = await pubsub.subscribe({ channel: "news" });
  if (position !== null) {
    const offset: number = position.offset;
    console.log(offset, position.epoch);
  }
  pubsub.messagePublished.add((message) => console.log(message.channel, message.message, message.offset));
  pubsub.restored.add((info: PubSubRestore) => {
    if (!info.recovered) {
      console.log("reload", info.channel);
    }
  });
  pubsub.gap.add(({ channel, missed }) => console.log("reload", channel, missed));

  const answer = await snorky.services.chat.join({ channel: "lobby" });
  console.log(answer.members.length, answer.presence[0]?.info);
  snorky.services.chat.membersChanged.add((channel, members) => console.log(channel, members.length));

  const document = await snorky.services.cursors.join({ document: "doc" });
  const [cursor, created] = document.createCursor({ position: 0, status: "idle" });
  await created;
  await cursor.update({ position: 3 });
  document.cursorUpdated.add((c) => console.log(c.owner, c.position));

  const rows: { id: number; text: string }[] = [];
  const processor = new Snorky.DataSync.CollectionDeltaProcessor({ Item: new ArrayCollection(rows) });
  snorky.services.datasync.deltaReceived.add((delta: Delta) => processor.processDelta(delta));
  const subscription = await snorky.services.datasync.subscribe({ getToken: () => "t" });
  await subscription.cancel();

  snorky.services.progress.taskChanged.add((state) => console.log(state.value, state.max));

  try {
    await snorky.call("jobs", "start", { steps: 10 }, { timeout: 1000 });
  } catch (error) {
    if (error instanceof SnorkyError && error.code === "timeout") {
      console.log(error.service, error.command);
    }
  }
  const viaWindow: typeof Snorky = window.Snorky;
  console.log(viaWindow.version, Snorky.CloseCodes.TOKEN_EXPIRED);
}

void main();
