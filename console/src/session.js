// One env's signed-in operator: Firebase Auth, the env's Firestore, @jobrelay/client and the API.
//
// In the cloud each env is its own Firebase project: the console signs in to it with Google (a popup
// on that env's Firebase app). Locally the stack's one Auth emulator serves the three projects, but a
// Firebase JS SDK sign-in (an API key, no project) lands in its default project only (dev's; ADR 0017).
// So locally the default project signs in through the SDK, and any other env's through the emulator's
// own REST sign-in naming the project, as `jobrelay dev token` does; that env's Firestore then reads
// with the ID token it gave (the emulator's mockUserToken), under the same rules.

import { createClient } from "@jobrelay/client";
import { initializeApp } from "firebase/app";
import {
  GoogleAuthProvider,
  connectAuthEmulator,
  getAuth,
  signInWithEmailAndPassword,
  signInWithPopup,
  signOut,
} from "firebase/auth";
import { connectFirestoreEmulator, getFirestore } from "firebase/firestore";

import { OperatorApi } from "./api.js";

let apps = 0;

function claimsOf(idToken) {
  try {
    const part = idToken.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "=")));
  } catch {
    return {};
  }
}

export class EnvSession {
  constructor(cfg, env) {
    this.env = env;
    this.emulator = cfg.emulator;
    // Through the SDK: always in the cloud; locally only where the emulator's SDK sign-ins land.
    this.viaSdk = !this.emulator || this.emulator.auth_project === env.project;
    this.user = null;
    this.claims = {};
    this.rest = null;
    this.db = null;
    this.app = initializeApp(env.firebase, `jobrelay-${env.name}-${apps++}`);
    if (this.viaSdk) {
      this.auth = getAuth(this.app);
      if (this.emulator) connectAuthEmulator(this.auth, `http://${this.emulator.auth}`, { disableWarnings: true });
      this.db = this.firestore(this.app);
    }
    this.api = new OperatorApi(env.api, env.name, (force) => this.token(force));
  }

  get name() { return this.env.name; }
  get isOperator() { return this.claims.admin === true; }
  /** Who signs in here: "password" (the local Auth emulator) or "google". */
  get method() { return this.emulator ? "password" : "google"; }

  firestore(app, mockUserToken) {
    const db = getFirestore(app);
    if (this.emulator) {
      const cut = this.emulator.firestore.lastIndexOf(":");
      const host = this.emulator.firestore.slice(0, cut);
      const port = Number(this.emulator.firestore.slice(cut + 1));
      connectFirestoreEmulator(db, host, port, mockUserToken ? { mockUserToken } : {});
    }
    return db;
  }

  /** The user already signed in (SDK persistence), if any. */
  async restore() {
    if (!this.viaSdk) return this.user;
    await this.auth.authStateReady();
    if (this.auth.currentUser) await this.adopt(this.auth.currentUser);
    return this.user;
  }

  async adopt(user) {
    const result = await user.getIdTokenResult();
    this.user = { uid: user.uid, email: user.email || user.uid };
    this.claims = result.claims || {};
  }

  async signInWithPassword(email, password) {
    if (this.viaSdk) {
      const cred = await signInWithEmailAndPassword(this.auth, email, password);
      await this.adopt(cred.user);
      return this.user;
    }
    const data = await this.emulatorCall("identitytoolkit.googleapis.com/v1/accounts:signInWithPassword", {
      targetProjectId: this.env.project,
      email,
      password,
      returnSecureToken: true,
    });
    this.keep(data.idToken, data.refreshToken, data.expiresIn);
    this.user = { uid: data.localId, email: data.email || email };
    this.db = this.firestore(initializeApp(this.env.firebase, `jobrelay-${this.env.name}-${apps++}`), data.idToken);
    return this.user;
  }

  async signInWithGoogle() {
    const cred = await signInWithPopup(this.auth, new GoogleAuthProvider());
    await this.adopt(cred.user);
    return this.user;
  }

  async signOut() {
    if (this.viaSdk) await signOut(this.auth);
    this.user = null;
    this.claims = {};
    this.rest = null;
    if (!this.viaSdk) this.db = null;
  }

  async token(force = false) {
    if (this.viaSdk) {
      if (!this.auth.currentUser) throw new Error(`not signed in to ${this.name}`);
      return this.auth.currentUser.getIdToken(force);
    }
    if (!this.rest) throw new Error(`not signed in to ${this.name}`);
    if (force || Date.now() > this.rest.expiresAt - 60_000) {
      const data = await this.emulatorCall("securetoken.googleapis.com/v1/token", {
        grant_type: "refresh_token",
        refresh_token: this.rest.refreshToken,
      });
      this.keep(data.id_token, data.refresh_token, data.expires_in);
    }
    return this.rest.idToken;
  }

  keep(idToken, refreshToken, expiresIn) {
    this.rest = { idToken, refreshToken, expiresAt: Date.now() + Number(expiresIn || 3600) * 1000 };
    this.claims = claimsOf(idToken);
  }

  /** The Auth emulator's REST API as its owner (local only: naming a project is the owner's right). */
  async emulatorCall(path, body) {
    const resp = await fetch(`http://${this.emulator.auth}/${path}?key=${encodeURIComponent(this.env.firebase.apiKey)}`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: "Bearer owner" },
      body: JSON.stringify(body),
    });
    const data = await resp.json().catch(() => ({}));
    if (!resp.ok) throw new Error(`sign-in to ${this.name} refused: ${data?.error?.message || resp.status}`);
    return data;
  }

  /** @jobrelay/client for this env's jobs, as this operator. */
  get client() {
    if (!this._client || this._clientDb !== this.db) {
      // The library asks auth.currentUser for the ID token: this session's, whichever way it signed in.
      const token = (force) => this.token(force);
      const auth = { currentUser: { getIdToken: token } };
      this._client = createClient({ apiUrl: this.api.base, env: this.name, auth, firestore: this.db });
      this._clientDb = this.db;
    }
    return this._client;
  }
}
