// Drives the official Node client (@google-cloud/tasks) against the emulator and prints what it saw
// as one JSON document; tests/cloudtasks/test_node_client.py asserts on it.
//
//   node check.cjs grpc|rest PORT PROJECT TARGET_URL
//
// grpc: the default transport on an insecure channel. rest: `fallback: true`, the client's HTTP/JSON
// transport, with an access token the emulator does not check (any token works, as with gcloud).
'use strict';

const {CloudTasksClient} = require('@google-cloud/tasks');
const {grpc, googleAuthLibrary} = require('google-gax');

const [mode, port, project, target] = process.argv.slice(2);
const LOCATION = 'us-central1';

function makeClient() {
  if (mode === 'grpc') {
    return new CloudTasksClient({
      apiEndpoint: '127.0.0.1', port: Number(port), projectId: project, sslCreds: grpc.credentials.createInsecure(),
    });
  }
  const auth = new googleAuthLibrary.OAuth2Client();
  auth.setCredentials({access_token: 'any-local-token', expiry_date: Date.now() + 3600 * 1000});
  return new CloudTasksClient({
    fallback: true, apiEndpoint: '127.0.0.1', port: Number(port), protocol: 'http', projectId: project, authClient: auth,
  });
}

// A refusal as {status, message}: the gRPC status name, or for REST the `status` of Google's JSON
// error body (the REST transport surfaces the HTTP answer: code = HTTP status, message = the body).
async function refusal(promise) {
  try {
    await promise;
    return null;
  } catch (err) {
    if (mode === 'grpc') {
      const status = Object.keys(grpc.status).find((name) => grpc.status[name] === err.code);
      return {status, http: null, message: err.details};
    }
    const body = JSON.parse(err.message);
    return {status: body.error.status, http: err.code, code: body.error.code, message: body.error.message};
  }
}

async function main() {
  const client = makeClient();
  const seen = {};
  const parent = client.locationPath(project, LOCATION);
  const queue = client.queuePath(project, LOCATION, `node-${mode}-${Date.now()}`);

  const [created] = await client.createQueue({
    parent,
    queue: {name: queue, rateLimits: {maxDispatchesPerSecond: 5}, retryConfig: {maxAttempts: 3, minBackoff: {seconds: 2}}},
  });
  seen.created = {
    name: created.name, state: created.state, rate: created.rateLimits.maxDispatchesPerSecond,
    attempts: created.retryConfig.maxAttempts, minBackoff: Number(created.retryConfig.minBackoff.seconds),
  };
  seen.duplicateQueue = await refusal(client.createQueue({parent, queue: {name: queue}}));
  const [listed] = await client.listQueues({parent});
  seen.listedQueue = listed.some((q) => q.name === queue);
  seen.paused = (await client.pauseQueue({name: queue}))[0].state;

  const taskName = `${queue}/tasks/node-1`;
  const [task] = await client.createTask({
    parent: queue,
    task: {
      name: taskName,
      httpRequest: {url: target, httpMethod: 'POST', body: Buffer.from('{"from":"node"}'), headers: {'Content-Type': 'application/json'}},
      dispatchDeadline: {seconds: 30},
    },
    responseView: 'FULL',
  });
  seen.task = {
    name: task.name, view: task.view, body: Buffer.from(task.httpRequest.body).toString(),
    method: task.httpRequest.httpMethod, deadline: Number(task.dispatchDeadline.seconds),
    scheduled: Number(task.scheduleTime.seconds) > 0,
  };
  seen.duplicateTask = await refusal(client.createTask({parent: queue, task: {name: taskName, httpRequest: {url: target}}}));
  const [full] = await client.getTask({name: taskName, responseView: 'FULL'});
  seen.fetchedBody = Buffer.from(full.httpRequest.body).toString();
  const [basic] = await client.getTask({name: taskName});
  seen.basicHasBody = Boolean(basic.httpRequest.body && basic.httpRequest.body.length);
  const [tasks] = await client.listTasks({parent: queue});
  seen.listedTasks = tasks.map((t) => t.name);
  const [ran] = await client.runTask({name: taskName});
  seen.ranDispatchCount = ran.dispatchCount;

  const [other] = await client.createTask({parent: queue, task: {httpRequest: {url: target}}});
  seen.generatedId = other.name.split('/tasks/')[1];
  await client.deleteTask({name: other.name});
  seen.deletedGet = await refusal(client.getTask({name: other.name}));
  seen.missingQueue = await refusal(client.getQueue({name: client.queuePath(project, LOCATION, 'no-such-queue')}));
  seen.badName = await refusal(client.getQueue({name: `projects/${project}/locations/${LOCATION}/queues/bad_name`}));
  seen.badDeadline = await refusal(client.createTask({parent: queue, task: {httpRequest: {url: target}, dispatchDeadline: {seconds: 5}}}));

  seen.resumed = (await client.resumeQueue({name: queue}))[0].state;
  seen.purged = Boolean((await client.purgeQueue({name: queue}))[0].purgeTime);
  await client.deleteQueue({name: queue});
  seen.deletedQueue = await refusal(client.getQueue({name: queue}));
  seen.queue = queue;
  await client.close();
  process.stdout.write(JSON.stringify(seen) + '\n');
}

main().catch((err) => {
  process.stderr.write(`${err.stack || err}\n`);
  process.exit(1);
});
