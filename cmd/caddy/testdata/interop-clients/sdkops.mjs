// The script's ops done with an official TypeScript SDK Client, for the
// drivers whose client is one underneath (mcp-remote's stdio side,
// LangChain's adapters).
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  ListRootsRequestSchema,
  ProgressNotificationSchema,
  ResourceUpdatedNotificationSchema,
} from "@modelcontextprotocol/sdk/types.js";
import { answers, normalize, resourceUpdates } from "./common.mjs";

// capabilities are what a client that answers as the README says declares.
export const capabilities = { sampling: {}, elicitation: {}, roots: { listChanged: true } };

// answerRequests makes client answer sampling, elicitation and roots as
// the README says.
export function answerRequests(client) {
  client.setRequestHandler(CreateMessageRequestSchema, (req) => answers.sampling(req.params));
  client.setRequestHandler(ElicitRequestSchema, (req) => answers.elicitation(req.params));
  client.setRequestHandler(ListRootsRequestSchema, () => answers.roots());
}

// newClient is an SDK Client that declares and answers as the README says.
export function newClient(name) {
  const client = new Client({ name, version: "1.0.0" }, { capabilities });
  answerRequests(client);
  return client;
}

// sdkOps implements the script's ops with a connected client. It takes
// over the client's progress notifications: the SDK runs notification
// handlers a microtask after it reads them but drops a request's progress
// handler as soon as it reads the response, so a progress notification
// read together with the result would be lost by the client itself and
// the count would depend on how the bytes happened to arrive. Counting
// every progress notification that arrives while the (only) call is in
// flight is what was received.
export function sdkOps(client) {
  let progress = 0;
  client.setNotificationHandler(ProgressNotificationSchema, () => {
    progress++;
  });
  const updates = resourceUpdates();
  client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => updates.arrived(n.params.uri));
  return {
    ping: async () => {
      await client.ping();
      return {};
    },
    listTools: async () => normalize.names((await client.listTools()).tools),
    callTool: async (op) => {
      progress = 0;
      // A progress token is only sent with onprogress.
      const options = op.progress ? { onprogress: () => {} } : undefined;
      const result = await client.callTool({ name: op.name, arguments: op.arguments ?? {} }, undefined, options);
      return normalize.callTool(result, op.progress ? progress : undefined);
    },
    listResources: async () => normalize.uris((await client.listResources()).resources),
    readResource: async (op) => normalize.readResource(await client.readResource({ uri: op.uri })),
    subscribe: (op) => updates.subscribe(op.uri, () => client.subscribeResource({ uri: op.uri })),
    listPrompts: async () => normalize.names((await client.listPrompts()).prompts),
    getPrompt: async (op) => normalize.getPrompt(await client.getPrompt({ name: op.name, arguments: op.arguments ?? {} })),
    setLevel: async (op) => {
      await client.setLoggingLevel(op.level);
      return {};
    },
    complete: async (op) => normalize.complete(await client.complete({ ref: op.ref, argument: op.argument })),
  };
}
