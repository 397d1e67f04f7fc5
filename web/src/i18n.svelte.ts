// User-facing words in English, French and German (the seeds' languages): the browser's language
// first, switchable, remembered in this browser.
const en = {
  appName: "Switchboard",
  login: "Log in", logout: "Log out", loginName: "Login", password: "Password",
  loginFailed: "Login failed", language: "Language",
  ready: "Ready", not_ready: "Not Ready", busy: "Busy", wrap_up: "Wrap-up", rona: "RONA",
  logged_out: "Logged out", reserved: "Reserved", pending: "pending",
  goReady: "Go Ready", goNotReady: "Not Ready…", startSession: "Start working", endSession: "End working session",
  inState: "in state for", offline: "Offline: reconnecting…", online: "Live",
  offer: "New work offered", customer: "Customer", service: "Service", subject: "Subject",
  waitingSince: "Waiting since", expiresIn: "Answer within", accept: "Accept", reject: "Reject",
  rejectReason: "Reason for rejecting", seconds: "s",
  myWork: "My work", nothingHeld: "You hold no work.", newMail: "New mail",
  myCases: "My cases", searchCases: "Search cases", searchWords: "Words", searchContact: "Contact",
  find: "Search", noCasesFound: "No cases found.", nextPage: "Next", prevPage: "Previous",
  lastActivity: "Last activity", contactHistory: "Contact history",
  teamQueue: "Team queue", personalQueue: "Personal queue", takeNext: "Take next", empty: "Empty",
  caseNo: "Case", status: "Status", thread: "Thread", from: "From", when: "When", to: "To",
  cc: "Cc", bcc: "Bcc", attachments: "Attachments", notes: "Notes", addNote: "Add note",
  dispositions: "Dispositions", history: "History", linkedCases: "Linked cases",
  showHtml: "Show formatted", showText: "Show text",
  reply: "Reply", replyAll: "Reply all", forward: "Forward", followUp: "Follow-up",
  newOutbound: "New email", template: "Template", noTemplate: "(no template)",
  upload: "Attach files", saveDraft: "Save draft", draftSaved: "Draft saved", send: "Send",
  sent: "Sent", discard: "Discard", text: "Text",
  notLatest: "You are answering an email that is not the latest of this thread.",
  close: "Close without reply", disposition: "Disposition", finalDisposition: "final (closes the case)",
  setDisposition: "Set", transfer: "Transfer", toService: "To queue", toAgent: "To agent",
  changeService: "Change service", mask: "Mask selection", maskHint: "Select text in a message first.",
  masked: "Masked",
  record: "Preview record", campaign: "Campaign", numbers: "Numbers", recommended: "recommended",
  attempts: "Attempts", call: "Call", complete: "Complete", skip: "Skip", reschedule: "Reschedule",
  forMe: "for me", forAnyone: "for anyone", autoDialIn: "Dials automatically in",
  callProgress: "Call", defaultDisposition: "Default disposition",
  wallboard: "Wallboard", desktop: "Desktop", people: "People", queues: "Queues",
  depth: "Waiting", oldestWait: "Oldest wait", agents: "Agents", holds: "Holds",
  forceReady: "Force Ready", forceNotReady: "Force Not Ready", forceLogout: "Log out",
  campaigns: "Campaigns", quarantine: "Quarantine", reason: "Reason",
  createPerson: "Save person", resetPassword: "Reset password", revokeSessions: "End sessions",
  name: "Name", role: "Role", teams: "Teams", skills: "Skills", active: "Active",
  shortcuts: "Shortcuts: Alt+A accept · Alt+J reject · Alt+R reply · Ctrl+Enter send · Alt+D disposition · Alt+Y ready",
  error: "Error", loading: "Loading…", noCase: "Open a case from My work.",
  reloaded: "Views reloaded", doneWithEmail: "Done with this email", offered: "Offered", received: "Received", nothing: "Nothing", records: "Records", edit: "Edit", services: "Services",
  reports: "Reports", period: "Period", granularity: "By", byDay: "day", byHour: "hour",
  anyService: "All services", show: "Show", downloadCsv: "Download CSV", updated: "Updated", required: "Required",
  opened: "Opened", closedCount: "Closed", reopened: "Reopened", emailsIn: "Emails in",
  emailsOut: "Emails out", firstResponse: "First response", resolution: "Resolution",
  serviceLevel: "Service level", overdue: "Overdue", backlog: "Backlog",
  transfersIn: "Transfers in", transfersOut: "Transfers out", agent: "Agent", handled: "Handled",
  replies: "Replies", averageHandle: "Average handle time", ronaCount: "RONA count",
  occupancy: "Occupancy", contacts: "Contacts", completed: "Completed", completion: "Completion",
  moreCriteria: "More criteria", threadId: "Thread id", activeSince: "Active from",
  activeUntil: "Active until",
};
export type Words = typeof en;
export type Word = keyof Words;

const fr: Words = {
  appName: "Switchboard",
  login: "Se connecter", logout: "Se déconnecter", loginName: "Identifiant", password: "Mot de passe",
  loginFailed: "Échec de la connexion", language: "Langue",
  ready: "Disponible", not_ready: "Indisponible", busy: "Occupé", wrap_up: "Post-traitement", rona: "Sans réponse",
  logged_out: "Déconnecté", reserved: "Réservé", pending: "en attente",
  goReady: "Disponible", goNotReady: "Indisponible…", startSession: "Commencer", endSession: "Terminer la session",
  inState: "depuis", offline: "Hors ligne : reconnexion…", online: "En direct",
  offer: "Nouveau travail proposé", customer: "Client", service: "Service", subject: "Objet",
  waitingSince: "En attente depuis", expiresIn: "Répondre dans", accept: "Accepter", reject: "Refuser",
  rejectReason: "Motif du refus", seconds: "s",
  myWork: "Mon travail", nothingHeld: "Aucun travail en cours.", newMail: "Nouveau message",
  myCases: "Mes dossiers", searchCases: "Rechercher des dossiers", searchWords: "Mots", searchContact: "Contact",
  find: "Rechercher", noCasesFound: "Aucun dossier trouvé.", nextPage: "Suivant", prevPage: "Précédent",
  lastActivity: "Dernière activité", contactHistory: "Historique du contact",
  teamQueue: "File d'équipe", personalQueue: "File personnelle", takeNext: "Prendre le suivant", empty: "Vide",
  caseNo: "Dossier", status: "Statut", thread: "Fil", from: "De", when: "Date", to: "À",
  cc: "Cc", bcc: "Cci", attachments: "Pièces jointes", notes: "Notes", addNote: "Ajouter une note",
  dispositions: "Qualifications", history: "Historique", linkedCases: "Dossiers liés",
  showHtml: "Afficher la mise en forme", showText: "Afficher le texte",
  reply: "Répondre", replyAll: "Répondre à tous", forward: "Transférer", followUp: "Relance",
  newOutbound: "Nouvel e-mail", template: "Modèle", noTemplate: "(aucun modèle)",
  upload: "Joindre des fichiers", saveDraft: "Enregistrer le brouillon", draftSaved: "Brouillon enregistré", send: "Envoyer",
  sent: "Envoyé", discard: "Abandonner", text: "Texte",
  notLatest: "Vous répondez à un e-mail qui n'est pas le dernier du fil.",
  close: "Clore sans réponse", disposition: "Qualification", finalDisposition: "finale (clôt le dossier)",
  setDisposition: "Appliquer", transfer: "Transférer", toService: "Vers la file", toAgent: "Vers l'agent",
  changeService: "Changer de service", mask: "Masquer la sélection", maskHint: "Sélectionnez d'abord un texte.",
  masked: "Masqué",
  record: "Fiche d'appel", campaign: "Campagne", numbers: "Numéros", recommended: "recommandé",
  attempts: "Tentatives", call: "Appeler", complete: "Terminer", skip: "Passer", reschedule: "Replanifier",
  forMe: "pour moi", forAnyone: "pour tous", autoDialIn: "Appel automatique dans",
  callProgress: "Appel", defaultDisposition: "Qualification par défaut",
  wallboard: "Tableau de bord", desktop: "Poste", people: "Personnes", queues: "Files",
  depth: "En attente", oldestWait: "Attente la plus longue", agents: "Agents", holds: "Traite",
  forceReady: "Forcer disponible", forceNotReady: "Forcer indisponible", forceLogout: "Déconnecter",
  campaigns: "Campagnes", quarantine: "Quarantaine", reason: "Motif",
  createPerson: "Enregistrer", resetPassword: "Nouveau mot de passe", revokeSessions: "Fermer les sessions",
  name: "Nom", role: "Rôle", teams: "Équipes", skills: "Compétences", active: "Actif",
  shortcuts: "Raccourcis : Alt+A accepter · Alt+J refuser · Alt+R répondre · Ctrl+Entrée envoyer · Alt+D qualifier · Alt+Y disponible",
  error: "Erreur", loading: "Chargement…", noCase: "Ouvrez un dossier depuis Mon travail.",
  reloaded: "Vues rechargées", doneWithEmail: "Traitement de l'e-mail terminé", offered: "Proposés", received: "Reçu", nothing: "Rien", records: "Fiches", edit: "Modifier", services: "Services",
  reports: "Rapports", period: "Période", granularity: "Par", byDay: "jour", byHour: "heure",
  anyService: "Tous les services", show: "Afficher", downloadCsv: "Télécharger le CSV", updated: "Mis à jour",
  required: "Obligatoire", opened: "Ouverts", closedCount: "Clos", reopened: "Rouverts",
  emailsIn: "E-mails reçus", emailsOut: "E-mails envoyés", firstResponse: "Première réponse",
  resolution: "Résolution", serviceLevel: "Niveau de service", overdue: "En retard",
  backlog: "Stock", transfersIn: "Transferts reçus", transfersOut: "Transferts émis",
  agent: "Agent", handled: "Traités", replies: "Réponses",
  averageHandle: "Durée moyenne de traitement", ronaCount: "Sans réponse (nombre)",
  occupancy: "Occupation", contacts: "Contacts", completed: "Terminées", completion: "Avancement",
  moreCriteria: "Plus de critères", threadId: "Identifiant du fil", activeSince: "Actif depuis le",
  activeUntil: "Actif jusqu'au",
};

const de: Words = {
  appName: "Switchboard",
  login: "Anmelden", logout: "Abmelden", loginName: "Benutzer", password: "Passwort",
  loginFailed: "Anmeldung fehlgeschlagen", language: "Sprache",
  ready: "Bereit", not_ready: "Nicht bereit", busy: "Beschäftigt", wrap_up: "Nachbearbeitung", rona: "Keine Antwort",
  logged_out: "Abgemeldet", reserved: "Reserviert", pending: "ausstehend",
  goReady: "Bereit", goNotReady: "Nicht bereit…", startSession: "Arbeit beginnen", endSession: "Arbeit beenden",
  inState: "seit", offline: "Offline: verbinde neu…", online: "Live",
  offer: "Neue Arbeit angeboten", customer: "Kunde", service: "Service", subject: "Betreff",
  waitingSince: "Wartet seit", expiresIn: "Antwort innerhalb", accept: "Annehmen", reject: "Ablehnen",
  rejectReason: "Grund der Ablehnung", seconds: "s",
  myWork: "Meine Arbeit", nothingHeld: "Keine Arbeit zugewiesen.", newMail: "Neue E-Mail",
  myCases: "Meine Fälle", searchCases: "Fälle suchen", searchWords: "Wörter", searchContact: "Kontakt",
  find: "Suchen", noCasesFound: "Keine Fälle gefunden.", nextPage: "Weiter", prevPage: "Zurück",
  lastActivity: "Letzte Aktivität", contactHistory: "Kontaktverlauf",
  teamQueue: "Team-Warteschlange", personalQueue: "Persönliche Warteschlange", takeNext: "Nächste nehmen", empty: "Leer",
  caseNo: "Fall", status: "Status", thread: "Verlauf", from: "Von", when: "Wann", to: "An",
  cc: "Cc", bcc: "Bcc", attachments: "Anhänge", notes: "Notizen", addNote: "Notiz hinzufügen",
  dispositions: "Abschlusscodes", history: "Verlauf", linkedCases: "Verknüpfte Fälle",
  showHtml: "Formatiert anzeigen", showText: "Text anzeigen",
  reply: "Antworten", replyAll: "Allen antworten", forward: "Weiterleiten", followUp: "Nachfassen",
  newOutbound: "Neue E-Mail", template: "Vorlage", noTemplate: "(keine Vorlage)",
  upload: "Dateien anhängen", saveDraft: "Entwurf speichern", draftSaved: "Entwurf gespeichert", send: "Senden",
  sent: "Gesendet", discard: "Verwerfen", text: "Text",
  notLatest: "Sie antworten auf eine E-Mail, die nicht die neueste des Verlaufs ist.",
  close: "Ohne Antwort schließen", disposition: "Abschlusscode", finalDisposition: "final (schließt den Fall)",
  setDisposition: "Setzen", transfer: "Übergeben", toService: "An Warteschlange", toAgent: "An Agent",
  changeService: "Service ändern", mask: "Auswahl maskieren", maskHint: "Markieren Sie zuerst Text.",
  masked: "Maskiert",
  record: "Anrufdatensatz", campaign: "Kampagne", numbers: "Nummern", recommended: "empfohlen",
  attempts: "Versuche", call: "Anrufen", complete: "Abschließen", skip: "Überspringen", reschedule: "Verschieben",
  forMe: "für mich", forAnyone: "für alle", autoDialIn: "Wählt automatisch in",
  callProgress: "Anruf", defaultDisposition: "Standard-Abschlusscode",
  wallboard: "Wallboard", desktop: "Arbeitsplatz", people: "Personen", queues: "Warteschlangen",
  depth: "Wartend", oldestWait: "Längste Wartezeit", agents: "Agenten", holds: "Bearbeitet",
  forceReady: "Bereit setzen", forceNotReady: "Nicht bereit setzen", forceLogout: "Abmelden",
  campaigns: "Kampagnen", quarantine: "Quarantäne", reason: "Grund",
  createPerson: "Person speichern", resetPassword: "Passwort zurücksetzen", revokeSessions: "Sitzungen beenden",
  name: "Name", role: "Rolle", teams: "Teams", skills: "Fähigkeiten", active: "Aktiv",
  shortcuts: "Tastenkürzel: Alt+A annehmen · Alt+J ablehnen · Alt+R antworten · Strg+Enter senden · Alt+D Abschlusscode · Alt+Y bereit",
  error: "Fehler", loading: "Lädt…", noCase: "Öffnen Sie einen Fall aus Meine Arbeit.",
  reloaded: "Ansichten neu geladen", doneWithEmail: "E-Mail erledigt", offered: "Angeboten", received: "Empfangen", nothing: "Nichts", records: "Datensätze", edit: "Bearbeiten", services: "Services",
  reports: "Berichte", period: "Zeitraum", granularity: "Pro", byDay: "Tag", byHour: "Stunde",
  anyService: "Alle Services", show: "Anzeigen", downloadCsv: "CSV herunterladen", updated: "Aktualisiert",
  required: "Pflichtfeld", opened: "Eröffnet", closedCount: "Geschlossen",
  reopened: "Wiedereröffnet", emailsIn: "E-Mails ein", emailsOut: "E-Mails aus",
  firstResponse: "Erste Antwort", resolution: "Lösung", serviceLevel: "Servicelevel",
  overdue: "Überfällig", backlog: "Bestand", transfersIn: "Übergaben ein",
  transfersOut: "Übergaben aus", agent: "Agent", handled: "Bearbeitet", replies: "Antworten",
  averageHandle: "Mittlere Bearbeitungszeit", ronaCount: "Keine Antwort (Anzahl)",
  occupancy: "Auslastung", contacts: "Kontakte", completed: "Abgeschlossen",
  completion: "Fortschritt", moreCriteria: "Weitere Kriterien", threadId: "Verlaufs-ID",
  activeSince: "Aktiv ab", activeUntil: "Aktiv bis",
};

export const LANGUAGES = { en, fr, de } as const;
export type Language = keyof typeof LANGUAGES;

function initial(): Language {
  const kept = localStorage.getItem("sb-language");
  if (kept && kept in LANGUAGES) return kept as Language;
  for (const tag of navigator.languages ?? [navigator.language]) {
    const base = tag.slice(0, 2).toLowerCase();
    if (base in LANGUAGES) return base as Language;
  }
  return "en";
}

export const locale = $state({ lang: initial() });

export function setLanguage(lang: Language): void {
  locale.lang = lang;
  localStorage.setItem("sb-language", lang);
  document.documentElement.lang = lang;
}

export function t(word: Word): string {
  return LANGUAGES[locale.lang][word];
}

/** A state name (ready, not_ready...) in the current language. */
export function stateName(state: string): string {
  return state in en ? t(state as Word) : state;
}

export function formatWhen(iso: string | null | undefined): string {
  if (!iso) return "";
  return new Date(iso).toLocaleString(locale.lang, { dateStyle: "short", timeStyle: "short" });
}

export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${rest}` : `${m}:${rest}`;
}
